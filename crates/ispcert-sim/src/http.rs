//! The HTTP face of the billing: `/billmgr` and `/manager/billmgr`, GET query or POST form,
//! dispatch by `func`, faults around the call, and one debug log line per request (never with
//! `authinfo` or any other secret).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::any;

use super::faults::{ErrorType, FaultKind};
use super::params::Params;
use super::render::{Answer, Out, Refusal, respond};
use super::state::Lang;
use super::{Sim, admin, funcs};

/// The simulator's routes.
pub(crate) fn router(sim: Arc<Sim>) -> Router {
    let mut r = Router::new().route("/billmgr", any(billing)).route("/manager/billmgr", any(billing));
    if sim.admin {
        r = r.merge(admin::routes());
    }
    r.with_state(sim)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

async fn billing(State(sim): State<Arc<Sim>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let Ok(body) = axum::body::to_bytes(body, sim.max_body_bytes).await else {
        let mut r = respond(&Refusal::value("request", "the request body is too large").into(), Out::Xml, Lang::En);
        *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return r;
    };
    // A form body is read only when declared as one, like the billing's CGI front end does.
    let form_body = (method == Method::POST && is_form(&headers)).then_some(&body[..]);
    let params = Params::parse(uri.query(), form_body);
    let func = params.get("func").unwrap_or_default().to_owned();
    let out = Out::from_param(params.get("out"));
    let lang = Lang::from_param(params.get("lang"));

    if let Some(kind) = sim.faults.take(&func, false) {
        sim.lock().faults_applied += 1;
        match kind {
            FaultKind::Slow { delay_ms } => tokio::time::sleep(Duration::from_millis(delay_ms)).await,
            other => {
                tracing::debug!(%method, path = uri.path(), %func, fault = ?other, "billing request: fault before commit");
                return fault_response(&sim, other, out, lang).await;
            }
        }
    }

    let (answer, account) = process(&sim, &func, &params, lang);

    let response = match sim.faults.take(&func, true) {
        Some(kind) => {
            sim.lock().faults_applied += 1;
            tracing::debug!(%func, fault = ?kind, "fault after commit");
            match kind {
                FaultKind::Slow { delay_ms } => {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    respond(&answer, out, lang)
                }
                other => fault_response(&sim, other, out, lang).await,
            }
        }
        None => respond(&answer, out, lang),
    };
    tracing::debug!(
        %method,
        path = uri.path(),
        %func,
        account = account.as_deref().unwrap_or("-"),
        elid = params.get("elid").unwrap_or("-"),
        outcome = outcome(&answer),
        ms = started.elapsed().as_millis() as u64,
        "billing request"
    );
    response
}

fn outcome(answer: &Answer) -> String {
    match answer {
        Answer::Refused(r) => format!("error {}/{}", r.kind, r.object),
        Answer::Ok { .. } => "ok".into(),
        Answer::Form(_) => "form".into(),
        Answer::List(p) => format!("list {} of {}", p.rows.len(), p.p_elems),
        Answer::Auth { .. } => "session".into(),
        Answer::File(f) => format!("file {}", f.content_type),
    }
}

/// Authenticates, counts and runs one billing call. Returns the answer and the account's email.
fn process(sim: &Sim, func: &str, params: &Params, lang: Lang) -> (Answer, Option<String>) {
    if func == "auth" {
        sim.lock().count_request(func, None);
        return (funcs::auth(sim, params), None);
    }
    let account = {
        let mut st = sim.lock();
        let account = match (params.get("authinfo"), params.get("auth")) {
            (Some(info), _) => info.split_once(':').and_then(|(email, password)| st.check_password(email, password)),
            (None, Some(session)) => st.session_account(session, Instant::now()),
            (None, None) => None,
        };
        st.count_request(func, account.as_deref());
        account
    };
    let Some(account) = account else {
        return (Refusal::auth().into(), None);
    };
    if sim.lock().access_denied(&account) {
        return (Refusal::access().into(), Some(account));
    }
    let answer = funcs::call(sim, &account, func, params, lang, jiff::Timestamp::now());
    if matches!(answer, Answer::Refused(_))
        && let Some(a) = sim.lock().accounts.get_mut(&account)
    {
        a.counters.refusals += 1;
    }
    (answer, Some(account))
}

const MAINTENANCE_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Technical works</title></head>\
<body><h1>Service temporarily unavailable</h1><p>Scheduled maintenance is in progress. \
Please try again later.</p></body></html>\n";

fn plain(status: StatusCode, ctype: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

async fn fault_response(sim: &Sim, kind: FaultKind, out: Out, lang: Lang) -> Response {
    match kind {
        FaultKind::Status { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = format!("{} {}\n", status.as_u16(), status.canonical_reason().unwrap_or("Error"));
            plain(status, "text/plain; charset=utf-8", text)
        }
        FaultKind::Timeout => {
            // Held until the simulator stops (or an hour passes): longer than any client timeout.
            let mut stop = sim.shutdown.clone();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
            plain(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "shutting down\n")
        }
        FaultKind::Html { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            plain(status, "text/html; charset=utf-8", MAINTENANCE_PAGE)
        }
        FaultKind::MalformedJson => {
            plain(StatusCode::OK, "application/json; charset=UTF-8", "{\"elem\": [{\"id\": \"3100001\", \"CN\": \"exa")
        }
        FaultKind::Auth => respond(&Refusal::auth().into(), out, lang),
        FaultKind::Error { error } => {
            let refusal = match error {
                ErrorType::Access => Refusal::access(),
                other => Refusal::new(other.as_str(), "", format!("simulated {} error", other.as_str())),
            };
            respond(&refusal.into(), out, lang)
        }
        FaultKind::ListWithoutElem => plain(
            StatusCode::OK,
            "application/json; charset=UTF-8",
            "{\"doc\": {\"p_cnt\": {\"$\": \"1000\"}, \"tparams\": {\"func\": {\"$\": \"certificate\"}}}}",
        ),
        FaultKind::Slow { .. } => {
            respond(&Refusal::new("xml", "", "internal: slow is not a response").into(), out, lang)
        }
    }
}
