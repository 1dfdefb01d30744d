//! Reading the billing's answers: one tolerant scalar helper, error detection in every format, and
//! a decoder per answer shape. Decoders take untrusted bytes and return a value or an error; they
//! never panic (property tests in `tests/billing_decode_props.rs` feed them arbitrary input).

use serde_json::Value;

use super::error::{BillingError, TransportKind};

/// Reads a scalar that may arrive as `"s"`, a number, `{"v": "s"}`, `{"$": "s"}` or a
/// one-element array of any of these.
pub fn scalar(v: &Value) -> Option<String> {
    scalar_at(v, 0)
}

fn scalar_at(v: &Value, depth: u8) -> Option<String> {
    if depth > 8 {
        return None;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(m) => m.get("v").or_else(|| m.get("$")).and_then(|x| scalar_at(x, depth + 1)),
        Value::Array(a) if a.len() == 1 => scalar_at(&a[0], depth + 1),
        _ => None,
    }
}

/// A field of an object, also under its `$`-prefixed attribute name (`out=json` renders XML
/// attributes that way).
pub fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let m = obj.as_object()?;
    m.get(key).or_else(|| m.get(&format!("${key}")))
}

/// A scalar field, empty strings treated as absent.
pub fn text(obj: &Value, key: &str) -> Option<String> {
    field(obj, key).and_then(scalar).filter(|s| !s.trim().is_empty())
}

/// Removes an optional `{"doc": ...}` wrapper.
pub fn unwrap_doc(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.contains_key("doc") && m.len() <= 2 => m.remove("doc").unwrap_or(Value::Null),
        other => other,
    }
}

/// The typed error of an `error` node, if the answer carries one.
pub fn error_of(answer: &Value) -> Option<BillingError> {
    let e = field(answer, "error")?;
    let kind = text(e, "type").unwrap_or_else(|| "unknown".to_string());
    let object = text(e, "object").unwrap_or_default();
    let message = text(e, "msg").or_else(|| scalar(e)).unwrap_or_default();
    Some(BillingError::classify(&kind, &object, message, |name| error_param(e, name)))
}

/// Error parameters come as a map (`{"amount": "5"}`), as a list of `{"name"|"$name", "value"|"$"}`
/// entries, or as one such entry.
fn error_param(e: &Value, name: &str) -> Option<String> {
    let params = field(e, "param")?;
    let entry_value = |p: &Value| -> Option<String> {
        let n = text(p, "name")?;
        (n == name).then(|| text(p, "value").or_else(|| field(p, "$").and_then(scalar)))?
    };
    match params {
        Value::Array(items) => items.iter().find_map(entry_value),
        Value::Object(m) if m.contains_key("name") || m.contains_key("$name") => entry_value(params),
        Value::Object(_) => text(params, name),
        _ => None,
    }
}

fn starts_with_ci(haystack: &[u8], needle: &str) -> bool {
    haystack.len() >= needle.len() && haystack[..needle.len()].eq_ignore_ascii_case(needle.as_bytes())
}

/// The body without a UTF-8 byte order mark and leading whitespace.
pub(crate) fn trim_start(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len());
    &body[start..]
}

/// Whether a body is an HTML page (a proxy, a maintenance window, a login form).
pub fn looks_like_html(body: &[u8]) -> bool {
    let b = trim_start(body);
    starts_with_ci(b, "<!doctype html") || starts_with_ci(b, "<html") || {
        let head = &b[..b.len().min(512)];
        String::from_utf8_lossy(head).to_ascii_lowercase().contains("<html")
    }
}

/// Parses an answer in bjson or json (also an XML error document), removes a `doc` wrapper and
/// turns an `error` node into the typed error.
pub fn answer(body: &[u8]) -> Result<Value, BillingError> {
    let b = trim_start(body);
    match b.first() {
        Some(b'{') | Some(b'[') => {
            let v: Value = serde_json::from_slice(b)
                .map_err(|e| BillingError::transport(TransportKind::Unparsable, format!("invalid JSON: {e}")))?;
            let v = unwrap_doc(v);
            match error_of(&v) {
                Some(err) => Err(err),
                None => Ok(v),
            }
        }
        Some(b'<') if looks_like_html(b) => Err(BillingError::transport(TransportKind::Html, "")),
        Some(b'<') => Err(xml_error(b).unwrap_or_else(|| {
            BillingError::transport(TransportKind::Unparsable, "an XML answer without an error node")
        })),
        Some(_) => Err(BillingError::transport(TransportKind::Unparsable, "not a JSON document")),
        None => Err(BillingError::transport(TransportKind::Unparsable, "an empty answer")),
    }
}

/// Reads `<doc><error type=".." object=".."><msg>..</msg><param name="..">..</param></error></doc>`.
pub fn xml_error(body: &[u8]) -> Option<BillingError> {
    use quick_xml::events::Event;

    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut in_error = false;
    let mut kind = None;
    let mut object = String::new();
    let mut message = String::new();
    let mut params: Vec<(String, String)> = Vec::new();
    let mut current: Option<String> = None; // "msg" or "param:<name>"
    // The text of the current element: quick-xml hands text over in pieces, each entity or
    // character reference (`&amp;`, `&#38;`) as its own event.
    let mut value = String::new();
    let attr = |e: &quick_xml::events::BytesStart<'_>, name: &str| -> Option<String> {
        let a = e.attributes().flatten().find(|a| AsRef::<str>::as_ref(&a.key) == name)?;
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned())
    };
    for _ in 0..10_000 {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match AsRef::<str>::as_ref(&e.name()) {
                "error" => {
                    in_error = true;
                    kind = attr(&e, "type");
                    object = attr(&e, "object").unwrap_or_default();
                }
                "msg" if in_error => {
                    current = Some("msg".into());
                    value.clear();
                }
                "param" if in_error => {
                    current = attr(&e, "name").map(|n| format!("param:{n}"));
                    value.clear();
                }
                _ => {}
            },
            Ok(Event::Text(t)) if current.is_some() => value.push_str(&t.xml10_content()),
            Ok(Event::CData(t)) if current.is_some() => value.push_str(&t.into_inner()),
            Ok(Event::GeneralRef(r)) if current.is_some() => match r.resolve_char_ref() {
                Ok(Some(c)) => value.push(c),
                _ => match quick_xml::escape::resolve_predefined_entity(&r) {
                    Some(resolved) => value.push_str(resolved),
                    None => {
                        value.push('&');
                        value.push_str(&r);
                        value.push(';');
                    }
                },
            },
            Ok(Event::End(e)) => match AsRef::<str>::as_ref(&e.name()) {
                "error" => break,
                "msg" | "param" => {
                    if let Some(slot) = current.take() {
                        let text = value.trim().to_string();
                        if slot == "msg" {
                            message.push_str(&text);
                        } else if let Some(name) = slot.strip_prefix("param:") {
                            params.push((name.to_string(), text));
                        }
                    }
                    value.clear();
                }
                _ => {}
            },
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    if !in_error {
        return None;
    }
    let kind = kind.unwrap_or_else(|| "unknown".into());
    Some(BillingError::classify(&kind, &object, message, |name| {
        params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }))
}

/// A submit that answers `{"ok": ...}` (or, for orders, at least an `id`).
pub fn ok(answer: &Value) -> Result<(), BillingError> {
    if field(answer, "ok").is_some() || field(answer, "id").is_some() {
        Ok(())
    } else {
        Err(BillingError::transport(TransportKind::Unparsable, "a submit answered without `ok`"))
    }
}

/// The new service id after `certificate.order.param`: `id` read as a scalar (`id.v` in bjson).
pub fn order_id(answer: &Value) -> Result<String, BillingError> {
    let id = text(answer, "id").map(|s| s.trim().to_string());
    match id {
        Some(id) if is_plausible_id(&id) => Ok(id),
        // A transport error on purpose: the billing may well have charged without telling us the
        // id, and `BillingClient::order` marks it as from a paid call.
        _ => Err(BillingError::transport(TransportKind::Unparsable, "the order answer carries no service id")),
    }
}

/// Service ids are numbers in every known answer; anything else is refused rather than passed on
/// as an `elid`.
pub fn is_plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

fn model(answer: &Value) -> Result<&Value, BillingError> {
    field(answer, "model")
        .filter(|m| m.is_object())
        .ok_or_else(|| BillingError::transport(TransportKind::Unparsable, "a form answer without `model`"))
}

/// `model.csr` and `model.key` after `certificate.order.csr` with `crt_type=generate`.
pub fn csr_and_key(answer: &Value) -> Result<(String, String), BillingError> {
    let m = model(answer)?;
    let pem_field = |name: &str| {
        text(m, name).filter(|s| s.contains("-----BEGIN")).ok_or_else(|| {
            BillingError::transport(TransportKind::Unparsable, format!("the answer carries no PEM `{name}`"))
        })
    };
    Ok((pem_field("csr")?, pem_field("key")?))
}

/// A country of the billing's list: its numeric id and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Country {
    pub id: String,
    pub name: String,
}

/// The country select list of the `certificate.order.csr` form: `slist.field_country` as
/// `[{"k": id, "v": name}]` (bjson), or `slist: [{"$name": "field_country", "val": [...]}]` (json).
pub fn countries(answer: &Value) -> Result<Vec<Country>, BillingError> {
    let slist = field(answer, "slist")
        .ok_or_else(|| BillingError::transport(TransportKind::Unparsable, "the form carries no select lists"))?;
    let entries: Option<&Value> = match slist {
        Value::Object(_) => field(slist, "field_country").or_else(|| field(slist, "country")),
        Value::Array(lists) => lists.iter().find_map(|l| {
            let name = text(l, "name")?;
            (name == "field_country" || name == "country").then(|| field(l, "val"))?
        }),
        _ => None,
    };
    let entries =
        entries.ok_or_else(|| BillingError::transport(TransportKind::Unparsable, "the form has no country list"))?;
    let items: Vec<&Value> = match entries {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let out: Vec<Country> = items
        .into_iter()
        .filter_map(|e| {
            let id = text(e, "k").or_else(|| text(e, "key"))?;
            let name = text(e, "v").or_else(|| field(e, "$").and_then(scalar))?;
            Some(Country { id, name })
        })
        .collect();
    if out.is_empty() {
        return Err(BillingError::transport(TransportKind::Unparsable, "the country list is empty"));
    }
    Ok(out)
}

/// What `certificate.edit` tells about one certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateDetails {
    pub id: Option<String>,
    pub common_name: String,
    /// Additional domains in the billing's order: the order `oldrequest` and `manual` reissues
    /// index approver emails by.
    pub alt_names: Vec<String>,
    /// The status text, when the form shows one.
    pub status: Option<String>,
    pub organization: Option<String>,
}

/// Names in one scalar split on spaces or commas, or an array of scalars.
pub fn name_list(v: Option<&Value>) -> Vec<String> {
    let raw: Vec<String> = match v {
        None => vec![],
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(other) => scalar(other).into_iter().collect(),
    };
    raw.iter()
        .flat_map(|s| s.split(|c: char| c.is_whitespace() || c == ','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn details(answer: &Value) -> Result<CertificateDetails, BillingError> {
    let m = model(answer)?;
    let common_name = text(m, "CN")
        .or_else(|| text(m, "cn"))
        .or_else(|| text(m, "domain"))
        .ok_or_else(|| BillingError::transport(TransportKind::Unparsable, "certificate details without `CN`"))?;
    Ok(CertificateDetails {
        id: text(m, "elid").or_else(|| text(m, "id")),
        common_name,
        alt_names: name_list(field(m, "altname")),
        status: text(m, "status_msg").or_else(|| text(m, "status")),
        organization: text(m, "O"),
    })
}

/// One row of the account's certificate list, with raw status codes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateRow {
    pub id: String,
    /// The common name (`CN` column, `domain` on some versions).
    pub domain: String,
    pub pricelist: Option<String>,
    pub created: Option<String>,
    /// Subscription end (`expiredate`), not the certificate's `notAfter`.
    pub expires: Option<String>,
    pub status_msg: Option<String>,
    /// Raw item status: 1 ordered, 2 active, 3 stopped, 4 deleted, 5 processing.
    pub item_status: Option<u32>,
    /// Raw certificate status when the list shows it: 3 requested, 4 enrolled, 5 issued, 6 failed.
    pub crt_status: Option<u32>,
    pub remote_id: Option<String>,
    pub cost: Option<String>,
}

/// One page of `func=certificate`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub rows: Vec<CertificateRow>,
    /// `p_elems`: how many rows the whole (filtered) list has.
    pub total: Option<usize>,
}

fn code(row: &Value, key: &str) -> Option<u32> {
    text(row, key).and_then(|s| s.trim().parse().ok())
}

/// One page of the certificate list, read strictly: the list decides whether an order exists, so
/// an answer that lacks its list markers is an error, never an empty list, and a row without an
/// id makes the whole page untrustworthy (a row silently dropped could be the order looked for).
/// An empty list is `elem` empty or absent with `p_elems` 0.
pub fn list_page(answer: &Value) -> Result<ListPage, BillingError> {
    let unparsable = |why: &str| BillingError::transport(TransportKind::Unparsable, why);
    let total: Option<usize> = text(answer, "p_elems").and_then(|s| s.trim().parse().ok());
    let elems: Vec<&Value> = match field(answer, "elem") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        None | Some(Value::Null) if total == Some(0) => vec![],
        None | Some(Value::Null) => return Err(unparsable("a list answer without its list (`elem`)")),
        Some(_) => return Err(unparsable("`elem` is not a list")),
    };
    let rows = elems.into_iter().map(list_row).collect::<Option<Vec<_>>>();
    let rows = rows.ok_or_else(|| unparsable("a list row without an id"))?;
    Ok(ListPage { rows, total })
}

fn list_row(row: &Value) -> Option<CertificateRow> {
    let id = text(row, "id")?;
    Some(CertificateRow {
        id,
        domain: text(row, "CN").or_else(|| text(row, "domain")).or_else(|| text(row, "name")).unwrap_or_default(),
        pricelist: text(row, "pricelist"),
        created: text(row, "createdate"),
        expires: text(row, "expiredate"),
        status_msg: text(row, "status_msg"),
        item_status: code(row, "item_status_orig"),
        crt_status: code(row, "crt_status_orig"),
        remote_id: text(row, "remoteid"),
        cost: text(row, "cost"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scalars_in_every_shape() {
        for v in [json!("s"), json!({"v": "s"}), json!({"$": "s"}), json!(["s"]), json!([{"v": "s"}])] {
            assert_eq!(scalar(&v).as_deref(), Some("s"), "{v}");
        }
        assert_eq!(scalar(&json!(12)).as_deref(), Some("12"));
        assert_eq!(scalar(&json!(["a", "b"])), None);
        assert_eq!(scalar(&json!(null)), None);
    }

    #[test]
    fn errors_in_bjson_json_and_xml() {
        let bjson = br#"{"error":{"type":"value","object":"period","msg":"Bad period"}}"#;
        assert!(matches!(answer(bjson), Err(BillingError::InvalidField { field, .. }) if field == "period"));
        let json = br#"{"doc":{"error":{"$type":"not_enough_money","$object":"","msg":{"$":"no"},
            "param":[{"$name":"deficit","$":"40.00"},{"$name":"currency","$":"RUB"}]}}}"#;
        let Err(BillingError::NotEnoughMoney(s)) = answer(json) else { panic!() };
        assert_eq!((s.deficit.as_deref(), s.currency.as_deref()), (Some("40.00"), Some("RUB")));
        let xml = br#"<?xml version="1.0"?><doc><error type="missed" object="csr"><msg>need csr</msg></error></doc>"#;
        assert!(
            matches!(answer(xml), Err(BillingError::MissingField { field, message }) if field == "csr" && message == "need csr")
        );
        let html = b"<!DOCTYPE html><html><body>Maintenance</body></html>";
        assert!(matches!(answer(html), Err(BillingError::Transport { kind: TransportKind::Html, .. })));
    }

    #[test]
    fn order_id_reads_id_v_and_refuses_garbage() {
        assert_eq!(order_id(&json!({"ok": true, "id": {"v": "4711"}})).unwrap(), "4711");
        assert_eq!(order_id(&json!({"id": "12"})).unwrap(), "12");
        let missing = order_id(&json!({"ok": true})).unwrap_err();
        assert!(missing.in_paid_call().may_have_charged());
        assert!(order_id(&json!({"id": "../x"})).is_err());
    }

    #[test]
    fn countries_from_bjson_and_json_select_lists() {
        let bjson =
            json!({"model": {}, "slist": {"field_country": [{"k": "182", "v": "Russia"}, {"k": "1", "v": "X"}]}});
        let c = countries(&bjson).unwrap();
        assert_eq!(c[0], Country { id: "182".into(), name: "Russia".into() });
        let js = json!({"slist": [{"$name": "field_country", "val": [{"$key": "182", "$": "Russia"}]}]});
        assert_eq!(countries(&js).unwrap()[0].name, "Russia");
    }

    #[test]
    fn list_rows_keep_raw_codes() {
        let v = json!({"elem": [{"id": "7", "CN": "a.example", "item_status": "Active", "item_status_orig": "2",
            "expiredate": "2027-11-30", "remoteid": "r-1"}], "p_elems": "1"});
        let page = list_page(&v).unwrap();
        assert_eq!(page.total, Some(1));
        assert_eq!(page.rows[0].item_status, Some(2));
        assert_eq!(page.rows[0].remote_id.as_deref(), Some("r-1"));
        assert_eq!(list_page(&json!({"p_elems": "0"})).unwrap().rows.len(), 0);
        assert_eq!(list_page(&json!({"elem": [], "p_elems": "0"})).unwrap().rows.len(), 0);
    }

    #[test]
    fn a_list_without_its_markers_or_with_a_row_without_id_is_an_error_not_an_empty_list() {
        for v in [
            json!({}),
            json!({"doc": {"p_cnt": "1000", "tparams": {"func": "certificate"}}}),
            json!({"p_elems": "3"}),
            json!({"elem": null}),
            json!({"elem": [{"id": "7"}, {"CN": "no-id.example"}], "p_elems": "2"}),
            json!({"elem": "7"}),
        ] {
            assert!(matches!(list_page(&v), Err(BillingError::Transport { .. })), "{v}");
        }
    }

    #[test]
    fn details_keep_the_billings_alt_name_order() {
        let v = json!({"model": {"CN": "a.example", "altname": "c.example b.example"}});
        assert_eq!(details(&v).unwrap().alt_names, ["c.example", "b.example"]);
        let v = json!({"model": {"CN": "a.example", "altname": [{"v": "x.example"}, "y.example"]}});
        assert_eq!(details(&v).unwrap().alt_names, ["x.example", "y.example"]);
    }
}
