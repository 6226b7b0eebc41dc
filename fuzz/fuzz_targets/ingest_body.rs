//! The ingest body parser: any bytes are a parsed call or a client error
//! (400/413/422), never a panic or a 5xx.
#![no_main]

use callhook_api::json::JsonObject;
use callhook_api::routes::calls::{parse_end, parse_start};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = JsonObject::from_slice(data) else {
        return;
    };
    for status in [
        parse_start(&body).err().map(|e| e.status),
        parse_end(&body).err().map(|e| e.status),
    ]
    .into_iter()
    .flatten()
    {
        assert!(status.is_client_error(), "{status} for {data:?}");
    }
});
