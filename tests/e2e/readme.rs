//! The README's "Try it" block, run as written against a server, so it
//! cannot rot. Only what must differ on a test machine is changed: the
//! server's address, its tokens, and the receivers (crm.example.com becomes a
//! receiver on 127.0.0.1: a test sends nothing off this machine). `curl`
//! runs with `--fail-with-body`, so any answer of 400 or more stops the block.

use sqlx::PgPool;

use crate::helpers::*;

/// The first ```sh block after `## Try it` in README.md.
fn try_it_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let after = readme
        .split_once("\n## Try it\n")
        .expect("a '## Try it' section")
        .1;
    let body = after.split_once("```sh\n").expect("a sh block in Try it").1;
    body.split_once("\n```")
        .expect("the block's end")
        .0
        .to_owned()
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_readmes_try_it_block_runs_as_written(pool: PgPool) {
    let rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let block = try_it_block();
    assert!(
        block.starts_with("make run"),
        "the block starts the server: {block}"
    );
    let script = block
        .lines()
        .skip(1) // `make run`: the test's server stands in for it
        .collect::<Vec<_>>()
        .join("\n")
        .replace("localhost:8080", &app.addr.to_string())
        .replace("local-admin-token", ADMIN)
        .replace("local-ingest-token", INGEST)
        .replace("https://crm.example.com/", &rx.url("/"));
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\ncurl() {{ command curl --fail-with-body \"$@\"; }}\n{script}"
        ))
        .output()
        .await
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the block failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let id = stdout.lines().next().unwrap_or("");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "ID is kept: {stdout}");
    assert!(
        stdout.trim_end().ends_with("204"),
        "the delete's status is printed last: {stdout}"
    );
    // Call 313 made both webhooks (sent, or cancelled by the delete at the
    // end if they were still waiting: either way, stored).
    let kinds: Vec<String> = sqlx::query_scalar(
        "select kind::text from deliveries where call_id = '313' order by kind::text",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(kinds, ["after_call", "during_call"]);
    let count: i64 = sqlx::query_scalar("select count(*) from calls")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 3, "calls 313, 314 and 315 are stored");
}
