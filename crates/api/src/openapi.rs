//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    audit, calls, deliveries, endpoints, recordings, scenarios, service, test_send, visits,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "callhook", description = "Call-tracking webhook dispatcher: scenarios, call ingest, delivery log."),
    paths(
        scenarios::create, scenarios::list, scenarios::get, scenarios::save, scenarios::delete,
        scenarios::rotate_secret,
        calls::start, calls::start_batch, calls::end, recordings::recording,
        visits::reserve, visits::pool,
        test_send::test_send, test_send::filter_preview,
        endpoints::list, endpoints::pause, endpoints::enable, endpoints::set_limits, endpoints::send_now,
        audit::list,
        deliveries::get_call, deliveries::list, deliveries::get, deliveries::retry, deliveries::retry_matching,
        service::healthz, service::readyz, service::metrics, service::openapi,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&Security),
    tags((name = "scenarios", description = "Admin API (admin token)"),
         (name = "deliveries", description = "Delivery log, replay (admin token)"),
         (name = "endpoints", description = "Endpoint health and limits: list, pause, enable, limits (admin token)"),
         (name = "audit", description = "Who changed what (admin token)"),
         (name = "ingest", description = "Call events (ingest token)"),
         (name = "service", description = "Probes and metrics (no token)"))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["admin_token", "ingest_token"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub(crate) fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
