//! What a billing function answers, and how that answer is written in `bjson`, `json` and `xml`
//! (shapes per `docs/billing-wire.md`). Functions build an [`Answer`]; only this module knows the
//! byte layout.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::state::{Lang, RowFixed};

/// The output format asked for with `out=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Out {
    Bjson,
    Json,
    Xml,
}

impl Out {
    /// BILLmanager's native output is XML; a request without `out` (or with a format the simulator
    /// does not speak) gets XML, so a client that forgets `out=bjson` fails loudly.
    pub(crate) fn from_param(out: Option<&str>) -> Out {
        match out {
            Some("bjson") => Out::Bjson,
            Some("json") => Out::Json,
            _ => Out::Xml,
        }
    }
}

/// A refusal: the billing's `error` document, always with HTTP 200.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// `type`: `auth`, `access`, `value`, `missed`, `not_enough_money`, ...
    pub kind: &'static str,
    /// `object`: the field or object refused; empty for `auth` and `not_enough_money`.
    pub object: String,
    pub msg: String,
    pub params: Vec<(&'static str, String)>,
}

impl Refusal {
    pub(crate) fn new(kind: &'static str, object: impl Into<String>, msg: impl Into<String>) -> Self {
        Refusal { kind, object: object.into(), msg: msg.into(), params: Vec::new() }
    }

    /// A required field is missing or empty.
    pub(crate) fn missed(field: impl Into<String>) -> Self {
        let field = field.into();
        let msg = format!("The required field '{field}' is not filled in");
        Refusal::new("missed", field, msg)
    }

    /// A field has a value the billing does not accept.
    pub(crate) fn value(field: impl Into<String>, why: impl AsRef<str>) -> Self {
        let field = field.into();
        let msg = format!("Invalid value of the field '{field}': {}", why.as_ref());
        Refusal::new("value", field, msg)
    }

    /// Wrong credentials. The message never repeats what was sent.
    pub(crate) fn auth() -> Self {
        Refusal::new("auth", "", "Invalid username or password")
    }

    /// Right credentials, but this way of access is not allowed for the account.
    pub(crate) fn access() -> Self {
        Refusal::new(
            "access",
            "authinfo",
            "Access denied: the account allows API access only from listed IP addresses or requires two-factor login",
        )
    }

    /// An `elid` this account cannot use (unknown, another account's, or deleted). One answer for
    /// all three, so a caller cannot probe other accounts' ids.
    pub(crate) fn no_such_elid(elid: &str) -> Self {
        Refusal::value("elid", format!("no certificate with id {elid:?} in this account"))
    }

    /// Adds the error's `param` entries (`not_enough_money` carries amount, have, currency,
    /// deficit).
    pub(crate) fn with_params(mut self, params: Vec<(&'static str, String)>) -> Self {
        self.params = params;
        self
    }
}

/// A form's fields (`model`) and select lists (`slist`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Form {
    pub model: Vec<(String, String)>,
    pub slist: Vec<(String, Vec<(String, String)>)>,
}

impl Form {
    pub(crate) fn field(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.model.push((k.into(), v.into()));
        self
    }
}

/// One row of the certificate list: the parts fixed until the certificate changes (cached,
/// pre-rendered) plus the status, which depends on the time of the request.
#[derive(Clone, Debug)]
pub(crate) struct ListRow {
    pub fixed: Arc<RowFixed>,
    pub item_status: u8,
    pub crt_status: u8,
    pub item_label: &'static str,
    pub status_msg: &'static str,
}

/// One page of the certificate list.
#[derive(Clone, Debug)]
pub(crate) struct ListPage {
    pub rows: Vec<ListRow>,
    pub p_elems: usize,
    pub p_num: usize,
    pub p_cnt: usize,
    /// Rows leave out `remoteid` (a billing that does not show the caller's tag).
    pub hide_remote_id: bool,
}

/// A downloaded file.
#[derive(Clone, Debug)]
pub(crate) struct FileBody {
    pub content_type: &'static str,
    pub filename: String,
    pub bytes: bytes_like::Bytes,
}

/// `Bytes` without naming the `bytes` crate (not a direct dependency): axum re-exports it.
pub(crate) mod bytes_like {
    pub use axum::body::Bytes;
}

/// Everything a billing function can answer.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    Refused(Refusal),
    /// `{"ok": true}`, with the new service id after an order.
    Ok {
        id: Option<String>,
    },
    Form(Form),
    List(ListPage),
    /// `func=auth`: a session id usable as `auth=<id>`.
    Auth {
        session: String,
    },
    File(FileBody),
}

impl From<Refusal> for Answer {
    fn from(r: Refusal) -> Answer {
        Answer::Refused(r)
    }
}

const JSON: &str = "application/json; charset=UTF-8";
const XML: &str = "text/xml; charset=UTF-8";

/// Writes `answer` as an HTTP response in the format `out` (labels in `lang`).
pub(crate) fn respond(answer: &Answer, out: Out, lang: Lang) -> Response {
    if let Answer::File(f) = answer {
        let mut r = Response::new(Body::from(f.bytes.clone()));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(f.content_type));
        let disposition = format!("attachment; filename=\"{}\"", f.filename.replace('"', "_"));
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        return r;
    }
    let (body, ctype) = match out {
        Out::Bjson => (bjson(answer, lang), JSON),
        Out::Json => (json(answer, lang), JSON),
        Out::Xml => (xml(answer, lang), XML),
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail: serde_json's errors come from the writer or from maps
    // with non-string keys.
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// Appends `{"k": "v", ...}` with the pairs in order.
fn push_json_object<K: AsRef<str>, V: AsRef<str>>(buf: &mut Vec<u8>, pairs: &[(K, V)]) {
    buf.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_json_str(buf, k.as_ref());
        buf.push(b':');
        push_json_str(buf, v.as_ref());
    }
    buf.push(b'}');
}

fn bjson(answer: &Answer, lang: Lang) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    match answer {
        Answer::Refused(r) => {
            b.extend_from_slice(b"{\"error\":{\"type\":");
            push_json_str(&mut b, r.kind);
            b.extend_from_slice(b",\"object\":");
            push_json_str(&mut b, &r.object);
            b.extend_from_slice(b",\"msg\":");
            push_json_str(&mut b, &r.msg);
            if !r.params.is_empty() {
                b.extend_from_slice(b",\"param\":");
                push_json_object(&mut b, &r.params);
            }
            b.extend_from_slice(b"}}");
        }
        Answer::Ok { id } => {
            b.extend_from_slice(b"{\"ok\":true");
            if let Some(id) = id {
                b.extend_from_slice(b",\"id\":{\"v\":");
                push_json_str(&mut b, id);
                b.push(b'}');
            }
            b.push(b'}');
        }
        Answer::Form(f) => {
            b.extend_from_slice(b"{\"model\":");
            push_json_object(&mut b, &f.model);
            if !f.slist.is_empty() {
                b.extend_from_slice(b",\"slist\":{");
                for (i, (name, vals)) in f.slist.iter().enumerate() {
                    if i > 0 {
                        b.push(b',');
                    }
                    push_json_str(&mut b, name);
                    b.extend_from_slice(b":[");
                    for (j, (k, v)) in vals.iter().enumerate() {
                        if j > 0 {
                            b.push(b',');
                        }
                        b.extend_from_slice(b"{\"k\":");
                        push_json_str(&mut b, k);
                        b.extend_from_slice(b",\"v\":");
                        push_json_str(&mut b, v);
                        b.push(b'}');
                    }
                    b.push(b']');
                }
                b.push(b'}');
            }
            b.push(b'}');
        }
        Answer::List(page) => return bjson_list(page, lang),
        Answer::Auth { session } => {
            b.extend_from_slice(b"{\"auth\":{\"$id\":");
            push_json_str(&mut b, session);
            b.extend_from_slice(b"}}");
        }
        Answer::File(_) => unreachable!("files are answered before formatting"),
    }
    b
}

/// The hot path of the 10,000-certificate benchmark: fixed parts are pre-rendered per row, so a
/// page is mostly memcpy.
fn bjson_list(page: &ListPage, _lang: Lang) -> Vec<u8> {
    let per_row = page.rows.first().map_or(0, |r| r.fixed.bjson.len() + 160);
    let mut b = Vec::with_capacity(64 + per_row * page.rows.len());
    b.extend_from_slice(b"{\"elem\":[");
    for (i, row) in page.rows.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        // Labels and codes are our own constants (no characters JSON must escape, codes are one
        // digit), so they are copied as they are: this loop runs a million times a second.
        b.push(b'{');
        let fixed = if page.hide_remote_id { &row.fixed.bjson_untagged } else { &row.fixed.bjson };
        b.extend_from_slice(fixed.as_bytes());
        b.extend_from_slice(b",\"item_status\":\"");
        b.extend_from_slice(row.item_label.as_bytes());
        b.extend_from_slice(b"\",\"item_status_orig\":\"");
        b.push(b'0' + row.item_status % 10);
        b.extend_from_slice(b"\",\"crt_status_orig\":\"");
        b.push(b'0' + row.crt_status % 10);
        b.extend_from_slice(b"\",\"status_msg\":\"");
        b.extend_from_slice(row.status_msg.as_bytes());
        b.extend_from_slice(b"\"}");
    }
    b.extend_from_slice(
        format!("],\"p_elems\":\"{}\",\"p_num\":\"{}\",\"p_cnt\":\"{}\"}}", page.p_elems, page.p_num, page.p_cnt)
            .as_bytes(),
    );
    b
}

/// `{"$": text}`, ISPsystem's json text node.
fn jtext(s: &str) -> serde_json::Value {
    serde_json::json!({ "$": s })
}

fn row_fields(row: &ListRow, hide_remote_id: bool) -> Vec<(&'static str, String)> {
    let mut fields = row.fixed.fields.clone();
    if hide_remote_id {
        fields.retain(|(k, _)| *k != "remoteid");
    }
    fields.push(("item_status", row.item_label.to_owned()));
    fields.push(("item_status_orig", row.item_status.to_string()));
    fields.push(("crt_status_orig", row.crt_status.to_string()));
    fields.push(("status_msg", row.status_msg.to_owned()));
    fields
}

fn json(answer: &Answer, _lang: Lang) -> Vec<u8> {
    use serde_json::{Map, Value, json};
    let doc: Value = match answer {
        Answer::Refused(r) => {
            let mut e = Map::new();
            e.insert("$type".into(), json!(r.kind));
            e.insert("$object".into(), json!(r.object));
            e.insert("msg".into(), jtext(&r.msg));
            if !r.params.is_empty() {
                let params: Vec<Value> = r.params.iter().map(|(k, v)| json!({"$name": k, "$": v})).collect();
                e.insert("param".into(), Value::Array(params));
            }
            json!({ "error": e })
        }
        Answer::Ok { id } => {
            let mut d = Map::new();
            d.insert("ok".into(), json!({}));
            if let Some(id) = id {
                d.insert("id".into(), jtext(id));
            }
            Value::Object(d)
        }
        Answer::Form(f) => {
            let mut d = Map::new();
            for (k, v) in &f.model {
                d.insert(k.clone(), jtext(v));
            }
            if !f.slist.is_empty() {
                let lists: Vec<Value> = f
                    .slist
                    .iter()
                    .map(|(name, vals)| {
                        let vals: Vec<Value> = vals.iter().map(|(k, v)| json!({"$key": k, "$": v})).collect();
                        json!({"$name": name, "val": vals})
                    })
                    .collect();
                d.insert("slist".into(), Value::Array(lists));
            }
            Value::Object(d)
        }
        Answer::List(page) => {
            let elems: Vec<Value> = page
                .rows
                .iter()
                .map(|row| {
                    let m: Map<String, Value> = row_fields(row, page.hide_remote_id)
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), jtext(&v)))
                        .collect();
                    Value::Object(m)
                })
                .collect();
            json!({
                "elem": elems,
                "p_elems": jtext(&page.p_elems.to_string()),
                "p_num": jtext(&page.p_num.to_string()),
                "p_cnt": jtext(&page.p_cnt.to_string()),
            })
        }
        Answer::Auth { session } => json!({ "auth": {"$id": session, "$": session} }),
        Answer::File(_) => unreachable!("files are answered before formatting"),
    };
    // A serde_json Value always serialises.
    serde_json::to_vec(&json!({ "doc": doc })).unwrap_or_default()
}

/// XML text: escaped, and with the control characters XML 1.0 forbids replaced, so hostile input
/// can never make the document unparsable.
fn xesc(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    quick_xml::escape::escape(clean.as_str()).into_owned()
}

/// An XML element name from a field name; field names come from our own code or from
/// `addon_<digits>`, but a hostile one is reduced to a safe name rather than trusted.
fn xname(s: &str) -> String {
    let ok = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if ok { s.to_owned() } else { "field".to_owned() }
}

fn xml(answer: &Answer, _lang: Lang) -> Vec<u8> {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<doc>");
    match answer {
        Answer::Refused(r) => {
            x +=
                &format!("<error type=\"{}\" object=\"{}\"><msg>{}</msg>", xesc(r.kind), xesc(&r.object), xesc(&r.msg));
            for (k, v) in &r.params {
                x += &format!("<param name=\"{}\">{}</param>", xesc(k), xesc(v));
            }
            x += "</error>";
        }
        Answer::Ok { id } => {
            x += "<ok/>";
            if let Some(id) = id {
                x += &format!("<id>{}</id>", xesc(id));
            }
        }
        Answer::Form(f) => {
            for (k, v) in &f.model {
                let n = xname(k);
                x += &format!("<{n}>{}</{n}>", xesc(v));
            }
            for (name, vals) in &f.slist {
                x += &format!("<slist name=\"{}\">", xesc(name));
                for (k, v) in vals {
                    x += &format!("<val key=\"{}\">{}</val>", xesc(k), xesc(v));
                }
                x += "</slist>";
            }
        }
        Answer::List(page) => {
            for row in &page.rows {
                x += "<elem>";
                for (k, v) in row_fields(row, page.hide_remote_id) {
                    x += &format!("<{k}>{}</{k}>", xesc(&v));
                }
                x += "</elem>";
            }
            x += &format!(
                "<p_elems>{}</p_elems><p_num>{}</p_num><p_cnt>{}</p_cnt>",
                page.p_elems, page.p_num, page.p_cnt
            );
        }
        Answer::Auth { session } => {
            x += &format!("<auth id=\"{0}\">{0}</auth>", xesc(session));
        }
        Answer::File(_) => unreachable!("files are answered before formatting"),
    }
    x += "</doc>\n";
    x.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(answer: &Answer, out: Out) -> String {
        let b = match out {
            Out::Bjson => bjson(answer, Lang::En),
            Out::Json => json(answer, Lang::En),
            Out::Xml => xml(answer, Lang::En),
        };
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn errors_have_the_documented_shapes_in_all_three_formats() {
        let r: Answer = Refusal::new("not_enough_money", "", "Not enough money")
            .with_params(vec![("amount", "5000.00".into()), ("currency", "RUB".into())])
            .into();
        let v: serde_json::Value = serde_json::from_str(&body(&r, Out::Bjson)).unwrap();
        assert_eq!(v["error"]["type"], "not_enough_money");
        assert_eq!(v["error"]["param"]["amount"], "5000.00");
        let v: serde_json::Value = serde_json::from_str(&body(&r, Out::Json)).unwrap();
        assert_eq!(v["doc"]["error"]["$type"], "not_enough_money");
        assert_eq!(v["doc"]["error"]["param"][0]["$name"], "amount");
        let x = body(&r, Out::Xml);
        assert!(x.contains("<error type=\"not_enough_money\" object=\"\"><msg>Not enough money</msg><param name=\"amount\">5000.00</param>"), "{x}");
    }

    #[test]
    fn hostile_text_cannot_break_xml_or_json() {
        let r: Answer = Refusal::value("CN", "bad \u{1}<&>\"").into();
        let x = body(&r, Out::Xml);
        assert!(!x.contains('\u{1}') && x.contains("&lt;&amp;&gt;"));
        let v: serde_json::Value = serde_json::from_str(&body(&r, Out::Bjson)).unwrap();
        assert!(v["error"]["msg"].as_str().unwrap().contains("\u{1}<&>"));
        let f = Answer::Form(Form::default().field("bad name<>", "v"));
        assert!(body(&f, Out::Xml).contains("<field>v</field>"));
    }

    #[test]
    fn ok_with_id_is_id_v_in_bjson() {
        let a = Answer::Ok { id: Some("42".into()) };
        assert_eq!(body(&a, Out::Bjson), r#"{"ok":true,"id":{"v":"42"}}"#);
        assert!(body(&a, Out::Xml).contains("<ok/><id>42</id>"));
        let v: serde_json::Value = serde_json::from_str(&body(&a, Out::Json)).unwrap();
        assert_eq!(v["doc"]["id"]["$"], "42");
    }
}
