//! Plain HTTP routes beside JSON-RPC on the RPC port: `GET /health` (the process answers), `GET /ready` (the
//! node's [`Probe`] says it is fit to serve: 200 or 503 with the checks as JSON), and the dashboard
//! (`GET /dashboard`), whose assets are embedded in the binary so the page works offline.

use jsonrpsee::server::{HttpBody, HttpResponse};
use serde_json::{json, Value};
use std::sync::Arc;

/// Whether this node is fit to serve, and the checks that say so.
pub trait Probe: Send + Sync + 'static {
    fn ready(&self) -> (bool, Value);
}

/// A node with nothing to wait for (the dev node): ready as soon as it answers.
pub struct AlwaysReady;

impl Probe for AlwaysReady {
    fn ready(&self) -> (bool, Value) {
        (true, json!({}))
    }
}

/// What the RPC port serves besides JSON-RPC.
#[derive(Clone)]
pub struct Routes {
    pub probe: Arc<dyn Probe>,
    /// The dashboard needs the `metis_*` API; a node without it does not serve the page.
    pub dashboard: bool,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            probe: Arc::new(AlwaysReady),
            dashboard: false,
        }
    }
}

const INDEX: &[u8] = include_bytes!("../dashboard/index.html");
const APP: &[u8] = include_bytes!("../dashboard/app.js");
const STYLE: &[u8] = include_bytes!("../dashboard/style.css");
const UPLOT_JS: &[u8] = include_bytes!("../dashboard/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &[u8] = include_bytes!("../dashboard/vendor/uPlot.min.css");

fn respond(status: u16, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    let mut r = HttpResponse::new(HttpBody::from(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = r.headers_mut();
    headers.insert("content-type", http::HeaderValue::from_static(content_type));
    headers.insert("cache-control", http::HeaderValue::from_static("no-store"));
    r
}

fn json_response(status: u16, v: &Value) -> HttpResponse {
    respond(status, "application/json", v.to_string().into_bytes())
}

/// The response to a plain GET of `path`, or None when the path is JSON-RPC's.
pub fn route(routes: &Routes, path: &str) -> Option<HttpResponse> {
    let asset = |t: &'static str, b: &'static [u8]| Some(respond(200, t, b.to_vec()));
    match path {
        "/health" => Some(json_response(200, &json!({ "status": "ok" }))),
        "/ready" => {
            let (ready, checks) = routes.probe.ready();
            let status = if ready { 200 } else { 503 };
            Some(json_response(status, &json!({ "ready": ready, "checks": checks })))
        }
        _ if !routes.dashboard => None,
        "/dashboard" | "/dashboard/" => asset("text/html; charset=utf-8", INDEX),
        "/dashboard/app.js" => asset("text/javascript; charset=utf-8", APP),
        "/dashboard/style.css" => asset("text/css; charset=utf-8", STYLE),
        "/dashboard/uPlot.iife.min.js" => asset("text/javascript; charset=utf-8", UPLOT_JS),
        "/dashboard/uPlot.min.css" => asset("text/css; charset=utf-8", UPLOT_CSS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Never;
    impl Probe for Never {
        fn ready(&self) -> (bool, Value) {
            (false, json!({ "l1": "unreachable" }))
        }
    }

    #[test]
    fn health_ready_and_assets() {
        let routes = Routes {
            probe: Arc::new(Never),
            dashboard: true,
        };
        assert_eq!(route(&routes, "/health").map(|r| r.status().as_u16()), Some(200));
        assert_eq!(route(&routes, "/ready").map(|r| r.status().as_u16()), Some(503));
        for p in ["/dashboard", "/dashboard/app.js", "/dashboard/uPlot.iife.min.js"] {
            assert_eq!(route(&routes, p).map(|r| r.status().as_u16()), Some(200), "{p}");
        }
        assert!(route(&routes, "/").is_none(), "JSON-RPC keeps the root");
        assert!(
            route(&Routes::default(), "/dashboard").is_none(),
            "no dashboard without the metis API"
        );
    }
}
