//! The billing functions. Each checks its input completely (see `validate`) before it takes the
//! state lock to change anything, so a refused request never charges or changes a thing.

use std::sync::Arc;

use jiff::Timestamp;

use crate::products::Region;
use crate::time::{add_months, expiredate, ymd};

use super::Sim;
use super::ca;
use super::countries::COUNTRIES;
use super::params::Params;
use super::pricing::{addon_price, product_price};
use super::render::{Answer, FileBody, Form, Refusal};
use super::state::{Cert, CrtType, EnrollKind, Enrollment, Lang, ListFilter, item_label, leaf_names};
use super::validate;

/// Largest page the list serves, and the default.
pub(crate) const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 20;

type Res = Result<Answer, Refusal>;

/// Every `func` the simulator implements: `auth` and what [`call`] dispatches. Request counters
/// always keep these under their own names.
pub(crate) const FUNCS: [&str; 10] = [
    "auth",
    "certificate.order.csr",
    "certificate.order.param",
    "certificate.edit",
    "certificate.file",
    "certificate.reissue.step2",
    "certificate.delete",
    "certificate",
    "certificate.filter",
    "service.prolong",
];

/// Runs billing function `func` for the authenticated `account`.
pub(crate) fn call(sim: &Sim, account: &str, func: &str, p: &Params, lang: Lang, now: Timestamp) -> Answer {
    let result = match func {
        "certificate.order.csr" => order_csr(sim, account, p),
        "certificate.order.param" => order_param(sim, account, p, now),
        "certificate.edit" => edit(sim, account, p, now),
        "certificate.file" => file(sim, account, p, now),
        "certificate.reissue.step2" => reissue(sim, account, p, now),
        "certificate.delete" => delete(sim, account, p),
        "certificate" => list(sim, account, p, now, lang),
        "certificate.filter" => filter(sim, account, p),
        "service.prolong" => prolong(sim, account, p, now),
        other => Err(Refusal::new("missed", "func", format!("Unknown function {other:?}"))),
    };
    result.unwrap_or_else(Answer::from)
}

/// `func=auth`: a session for `username`/`password`.
pub(crate) fn auth(sim: &Sim, p: &Params) -> Answer {
    let (Some(user), Some(password)) = (p.get("username"), p.get("password")) else {
        return Refusal::auth().into();
    };
    let mut st = sim.lock();
    match st.check_password(user, password) {
        Some(account) if st.access_denied(&account) => Refusal::access().into(),
        Some(account) => {
            let session = format!("{:032x}", rand::random::<u128>());
            st.open_session(account, session.clone(), std::time::Instant::now());
            Answer::Auth { session }
        }
        None => Refusal::auth().into(),
    }
}

fn region_of(sim: &Sim, account: &str) -> Region {
    sim.lock().accounts.get(account).map_or(Region::Russian, |a| a.region)
}

fn period_list() -> (String, Vec<(String, String)>) {
    ("period".into(), vec![("12".into(), "1 year".into()), ("24".into(), "2 years".into())])
}

fn country_list() -> (String, Vec<(String, String)>) {
    ("field_country".into(), COUNTRIES.iter().map(|c| (c.id.to_string(), c.name.to_owned())).collect())
}

/// `certificate.order.csr`: without `sok` the form (with the country list); with
/// `sok=ok&crt_type=generate` a new key and CSR.
fn order_csr(sim: &Sim, account: &str, p: &Params) -> Res {
    let region = region_of(sim, account);
    if !p.is("sok", "ok") {
        let (_, pricelist) = validate::pricelist(p, region)?;
        if p.filled("period").is_some() {
            validate::period(p)?;
        }
        let form = Form {
            model: vec![
                ("pricelist".into(), pricelist.to_string()),
                ("period".into(), p.filled("period").unwrap_or("12").to_owned()),
                ("crt_type".into(), "generate".into()),
            ],
            slist: vec![
                country_list(),
                period_list(),
                (
                    "crt_type".into(),
                    vec![("generate".into(), "Generate".into()), ("manual".into(), "Enter CSR".into())],
                ),
            ],
        };
        return Ok(Answer::Form(form));
    }
    match p.required("crt_type")? {
        "generate" => {}
        other => {
            return Err(Refusal::value(
                "crt_type",
                format!("{other:?}: the billing makes a key only for crt_type=generate"),
            ));
        }
    }
    for f in ["pricelist", "period", "field_country", "CN", "ST", "L", "O"] {
        p.required(f)?;
    }
    let (product, pricelist) = validate::pricelist(p, region)?;
    validate::period(p)?;
    let (subject, _) = validate::generate_subject(p)?;
    let cn = validate::cn(p.required("CN")?, product)?;
    let altnames = match p.filled("altname") {
        Some(raw) => validate::altnames(raw, "altname", &cn)?,
        None => Vec::new(),
    };
    if let Some(input) = p.filled("altname_input") {
        let input: Vec<String> = input.split_whitespace().map(str::to_ascii_lowercase).collect();
        if input != altnames {
            return Err(Refusal::value("altname_input", "differs from altname"));
        }
    }
    let single = !product.multi_domain() && sim.addon_code(pricelist).is_none();
    if single && !altnames.is_empty() {
        return Err(Refusal::value("altname", format!("{} is a single-domain product", product.title)));
    }
    let names = leaf_names(&cn, &altnames);
    let (csr, key) = ca::generate_key_and_csr(&names, &subject).map_err(|e| Refusal::value("CN", e))?;
    Ok(Answer::Form(Form {
        model: vec![
            ("csr".into(), csr),
            ("key".into(), key),
            ("CN".into(), cn),
            ("altname".into(), altnames.join(" ")),
        ],
        slist: Vec::new(),
    }))
}

fn not_enough_money(price: super::Money, have: super::Money, currency: &str) -> Refusal {
    let deficit = price.checked_sub(have).unwrap_or(price);
    Refusal::new("not_enough_money", "", "Not enough money on the account balance").with_params(vec![
        ("amount", price.to_string()),
        ("have", have.to_string()),
        ("currency", currency.to_owned()),
        ("deficit", deficit.to_string()),
    ])
}

/// `certificate.order.param`: without `sok` the order form (showing the product's addon field,
/// which is how a client can learn an addon code); with `sok=ok` the order. `skipbasket=on` pays
/// from the balance at once; without it the order goes into the basket unpaid, and stays there.
fn order_param(sim: &Sim, account: &str, p: &Params, now: Timestamp) -> Res {
    let region = region_of(sim, account);
    if !p.is("sok", "ok") {
        let (product, pricelist) = validate::pricelist(p, region)?;
        let mut model = vec![
            ("pricelist".into(), pricelist.to_string()),
            ("period".into(), p.filled("period").unwrap_or("12").to_owned()),
            ("cost".into(), product_price(product, region, 12).to_string()),
        ];
        if let Some(code) = sim.addon_code(pricelist) {
            model.push((format!("addon_{code}"), "0".into()));
        }
        let form = Form { model, slist: vec![period_list(), country_list()] };
        return Ok(Answer::Form(form));
    }
    let v = validate::order(p, region, |pl| sim.addon_code(pl))?;
    let addon_count = v.addon.map_or(0, |(_, n)| n);
    let price = product_price(v.product, region, v.period)
        .checked_add(addon_price(region, v.period, addon_count))
        .ok_or_else(|| Refusal::value("addon", "amount out of range"))?;
    let paid = p.is("skipbasket", "on");
    let mut st = sim.lock();
    let id = {
        let acct = st.accounts.get_mut(account).ok_or_else(Refusal::auth)?;
        if paid {
            if acct.balance < price {
                return Err(not_enough_money(price, acct.balance, &acct.currency));
            }
            acct.balance = acct.balance.checked_sub(price).unwrap_or(acct.balance);
            acct.counters.orders += 1;
            acct.counters.charged = acct.counters.charged.checked_add(price).unwrap_or(acct.counters.charged);
        } else {
            acct.counters.unpaid_orders += 1;
        }
        st.next_id()
    };
    let names = leaf_names(&v.cn, &v.altnames);
    let altnames = kept_order(&st, v.altnames);
    let mut cert = Cert {
        id,
        account: account.to_owned(),
        product: v.product,
        region,
        pricelist: v.pricelist,
        period: v.period,
        crt_type: v.crt_type,
        cn: v.cn,
        altnames,
        paid_altnames: v.paid_altnames,
        addon: v.addon,
        approver_emails: v.approvers,
        data: v.data,
        csr: v.csr_pem,
        key: v.key_pem,
        remoteid: v.remoteid,
        created: now,
        expires: sim.subscription.map_or_else(|| add_months(now, v.period), |d| now + d),
        exact_expiry: sim.subscription.is_some(),
        cost: price,
        paid,
        deleted: false,
        reissues: 0,
        reissue_forms: Vec::new(),
        prolongs: 0,
        current: Enrollment {
            kind: EnrollKind::Order,
            seq: 1,
            started: now,
            issue_at: now + sim.issue_after,
            failed: false,
            names,
            spki: Arc::new(v.spki),
            chain: Default::default(),
        },
        previous: None,
        row: Default::default(),
    };
    cert.refresh_row();
    st.certs.insert(id, cert);
    if let Some(acct) = st.accounts.get_mut(account) {
        acct.certs.push(id);
    }
    Ok(Answer::Ok { id: Some(id.to_string()) })
}

/// `certificate.edit`: the certificate's details, alt names in the billing's order.
fn edit(sim: &Sim, account: &str, p: &Params, now: Timestamp) -> Res {
    let elid = p.required("elid")?;
    let st = sim.lock();
    let c = st.cert_of(account, elid).ok_or_else(|| Refusal::no_such_elid(elid))?;
    let (item_status, crt_status) = c.statuses(now);
    let mut f = Form::default()
        .field("elid", c.id.to_string())
        .field("id", c.id.to_string())
        .field("CN", c.cn.clone())
        .field("altname", c.altnames.join(" "))
        .field("pricelist", c.pricelist.to_string())
        .field("period", c.period.to_string())
        .field("crt_type", c.crt_type.as_str())
        .field("status", crt_status.to_string())
        .field("item_status", item_status.to_string())
        .field("createdate", ymd(c.created))
        .field("expiredate", expiredate(c.expires, c.exact_expiry))
        .field("remoteid", c.remoteid.clone().unwrap_or_default())
        .field("O", c.data.subject.o.clone().unwrap_or_default())
        .field("OU", c.data.subject.ou.clone().unwrap_or_default())
        .field("L", c.data.subject.l.clone().unwrap_or_default())
        .field("ST", c.data.subject.st.clone().unwrap_or_default())
        .field("field_country", c.data.field_country.clone().unwrap_or_default())
        .field("emailAddress", c.data.subject.email.clone().unwrap_or_default());
    for (i, e) in c.approver_emails.iter().enumerate() {
        f = f.field(format!("approver_email_{}", i + 1), e.clone());
    }
    for (k, v) in &c.data.contacts {
        f = f.field(*k, v.clone());
    }
    f = f.field("csr", c.csr.clone());
    Ok(Answer::Form(f))
}

/// `certificate.file&type=crt`: the issued certificate; the previous one while a reissue or
/// prolongation is in progress; `missed`/`file` before the first issue.
fn file(sim: &Sim, account: &str, p: &Params, now: Timestamp) -> Res {
    let elid = p.required("elid")?;
    match p.required("type")? {
        "crt" => {}
        other => return Err(Refusal::value("type", format!("{other:?} (crt)"))),
    }
    let (cell, spec) = {
        let st = sim.lock();
        let c = st.cert_of(account, elid).ok_or_else(|| Refusal::no_such_elid(elid))?;
        let served = c.paid.then(|| c.served(now)).flatten();
        let e = served.ok_or_else(|| Refusal::new("missed", "file", "The certificate has not been issued yet"))?;
        let spec = e.chain.get().is_none().then(|| c.leaf_spec(e, sim.validity, sim.seed));
        (Arc::clone(&e.chain), spec)
    };
    // Signing happens here, at the first download, outside the state lock.
    let chain = cell.get_or_init(|| match &spec {
        Some(spec) => sim.ca.issue(spec).map(Arc::new),
        None => Err("chain vanished".into()),
    });
    let chain = chain.as_ref().map_err(|e| Refusal::value("csr", format!("the CA could not sign: {e}")))?;
    Ok(Answer::File(FileBody {
        content_type: chain.content_type,
        filename: chain.filename.clone(),
        bytes: chain.body.clone(),
    }))
}

/// `certificate.reissue.step2` in its three forms.
fn reissue(sim: &Sim, account: &str, p: &Params, now: Timestamp) -> Res {
    let elid = p.required("elid")?;
    if !p.is("sok", "ok") {
        let st = sim.lock();
        let c = st.cert_of(account, elid).ok_or_else(|| Refusal::no_such_elid(elid))?;
        let form = Form::default()
            .field("elid", c.id.to_string())
            .field("CN", c.cn.clone())
            .field("altname", c.altnames.join(" "));
        return Ok(Answer::Form(form));
    }
    validate::approver_method(p, true)?;
    let form = p.required("crt_type")?;
    let new_csr = match form {
        "oldrequest" | "altname" => None,
        "manual" => {
            let pem = p.required("csr")?;
            Some((pem.to_owned(), validate::csr(pem)?))
        }
        other => {
            return Err(Refusal::value("crt_type", format!("{other:?} (oldrequest, manual or altname)")));
        }
    };
    let new_altnames = match form {
        "altname" => Some(p.required("altname")?),
        _ => None,
    };
    let mut st = sim.lock();
    let (hold, reorder) = (st.hold_reissues, st.reorder_altnames);
    let c = st
        .certs
        .get_mut(&elid.trim().parse().unwrap_or(0))
        .filter(|c| c.account == account && !c.deleted && c.paid)
        .ok_or_else(|| Refusal::no_such_elid(elid))?;
    let altnames = match new_altnames {
        Some(raw) => {
            let list = validate::altnames(raw, "altname", &c.cn)?;
            if let Some(input) = p.filled("altname_input") {
                let input: Vec<String> = input.split_whitespace().map(str::to_ascii_lowercase).collect();
                if input != list {
                    return Err(Refusal::value("altname_input", "differs from altname"));
                }
            }
            if list.len() > c.paid_altnames as usize {
                return Err(Refusal::value(
                    "altname",
                    format!("{} alt names given, {} paid for", list.len(), c.paid_altnames),
                ));
            }
            list
        }
        None => c.altnames.clone(),
    };
    let names = leaf_names(&c.cn, &altnames);
    let spki = match &new_csr {
        Some((_, csr)) => {
            if csr.cn.as_deref() != Some(c.cn.as_str()) {
                return Err(Refusal::value("csr", format!("the request must be for {:?}", c.cn)));
            }
            validate::csr_names_within(csr, &names)?;
            Arc::new(csr.spki.clone())
        }
        None => Arc::clone(&c.current.spki),
    };
    let mut approver_names: Vec<&str> = vec![c.cn.as_str()];
    approver_names.extend(altnames.iter().map(String::as_str));
    let approvers = validate::approvers(p, &approver_names)?;
    // A held reissue waits "ten years": for the approver who never answers.
    let issue_after = if hold { jiff::SignedDuration::from_hours(10 * 365 * 24) } else { sim.issue_after };
    c.enroll(EnrollKind::Reissue, names, spki, now, issue_after);
    c.approver_emails = approvers;
    c.altnames = if reorder { reordered(altnames) } else { altnames };
    c.reissue_forms.push(form.to_owned());
    if let Some((pem, _)) = new_csr {
        c.csr = pem;
        c.key = None;
        c.crt_type = CrtType::Manual;
    }
    c.reissues += 1;
    if let Some(a) = st.accounts.get_mut(account) {
        a.counters.reissues += 1;
    }
    Ok(Answer::Ok { id: None })
}

/// The alt names as an order keeps them: as given, or (`reorder_altnames`) in another order, so
/// that `certificate.edit` lists them so and reissues must index approvers by that list.
fn kept_order(st: &super::state::State, altnames: Vec<String>) -> Vec<String> {
    if st.reorder_altnames { reordered(altnames) } else { altnames }
}

/// Another order than anyone would give: reverse alphabetical.
fn reordered(mut altnames: Vec<String>) -> Vec<String> {
    altnames.sort_by(|a, b| b.cmp(a));
    altnames
}

/// `certificate.delete`: marks the service deleted (no refund). Without `sok` nothing happens.
fn delete(sim: &Sim, account: &str, p: &Params) -> Res {
    let elid = p.required("elid")?;
    let mut st = sim.lock();
    let c = st.cert_of_mut(account, elid).ok_or_else(|| Refusal::no_such_elid(elid))?;
    if !p.is("sok", "ok") {
        let form = Form::default().field("elid", c.id.to_string()).field("CN", c.cn.clone());
        return Ok(Answer::Form(form));
    }
    c.deleted = true;
    if let Some(a) = st.accounts.get_mut(account) {
        a.counters.deletes += 1;
    }
    Ok(Answer::Ok { id: None })
}

fn page_param(p: &Params, name: &str, default: usize) -> Result<usize, Refusal> {
    match p.filled(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Refusal::value(name, format!("{v:?} is not a positive number"))),
    }
}

/// `certificate`: one page of the account's certificates through its sticky filter.
fn list(sim: &Sim, account: &str, p: &Params, now: Timestamp, lang: Lang) -> Res {
    let p_cnt = page_param(p, "p_cnt", DEFAULT_PAGE)?.min(MAX_PAGE);
    let p_num = page_param(p, "p_num", 1)?;
    Ok(Answer::List(sim.lock().list(account, p_cnt, p_num, now, lang)))
}

/// `certificate.filter`: shows the sticky filter, or with `sok=ok` replaces it (empty fields
/// clear it).
fn filter(sim: &Sim, account: &str, p: &Params) -> Res {
    let mut st = sim.lock();
    let acct = st.accounts.get_mut(account).ok_or_else(Refusal::auth)?;
    if !p.is("sok", "ok") {
        let f = &acct.filter;
        let form = Form::default()
            .field("CN", f.cn.clone().unwrap_or_default())
            .field("item_status", f.item_status.map(|s| s.to_string()).unwrap_or_default())
            .field("pricelist", f.pricelist.map(|s| s.to_string()).unwrap_or_default());
        let statuses = (1..=5u8).map(|s| (s.to_string(), item_label(s, Lang::En).to_owned())).collect();
        return Ok(Answer::Form(Form { slist: vec![("item_status".into(), statuses)], ..form }));
    }
    let item_status = match p.filled("item_status") {
        None => None,
        Some(v) => Some(
            v.parse::<u8>()
                .ok()
                .filter(|s| (1..=5).contains(s))
                .ok_or_else(|| Refusal::value("item_status", format!("{v:?} is not a status")))?,
        ),
    };
    let pricelist = match p.filled("pricelist") {
        None => None,
        Some(v) => {
            Some(v.parse::<u32>().map_err(|_| Refusal::value("pricelist", format!("{v:?} is not a price list id")))?)
        }
    };
    acct.filter = ListFilter { cn: p.filled("CN").map(str::to_owned), item_status, pricelist };
    Ok(Answer::Ok { id: None })
}

/// `service.prolong`: pays another period and re-enrolls the certificate.
fn prolong(sim: &Sim, account: &str, p: &Params, now: Timestamp) -> Res {
    let elid = p.required("elid")?;
    let id: u64 = elid.trim().parse().unwrap_or(0);
    let mut st = sim.lock();
    let st = &mut *st;
    let c = st
        .certs
        .get_mut(&id)
        .filter(|c| c.account == account && !c.deleted && c.paid)
        .ok_or_else(|| Refusal::no_such_elid(elid))?;
    let price_for = |c: &Cert, period: u32| {
        let addon = c.addon.map_or(0, |(_, n)| n);
        product_price(c.product, c.region, period)
            .checked_add(addon_price(c.region, period, addon))
            .unwrap_or(super::Money::ZERO)
    };
    if !p.is("sok", "ok") {
        let form = Form {
            model: vec![
                ("elid".into(), c.id.to_string()),
                ("period".into(), c.period.to_string()),
                ("cost".into(), price_for(c, c.period).to_string()),
                ("expiredate".into(), expiredate(c.expires, c.exact_expiry)),
            ],
            slist: vec![period_list()],
        };
        return Ok(Answer::Form(form));
    }
    let period = validate::period(p)?;
    let price = price_for(c, period);
    let acct = st.accounts.get_mut(account).ok_or_else(Refusal::auth)?;
    if acct.balance < price {
        return Err(not_enough_money(price, acct.balance, &acct.currency));
    }
    acct.balance = acct.balance.checked_sub(price).unwrap_or(acct.balance);
    acct.counters.prolongs += 1;
    acct.counters.charged = acct.counters.charged.checked_add(price).unwrap_or(acct.counters.charged);
    let (names, spki) = (c.current.names.clone(), Arc::clone(&c.current.spki));
    c.enroll(EnrollKind::Prolong, names, spki, now, sim.issue_after);
    c.expires = match sim.subscription {
        Some(d) => c.expires.max(now) + d,
        None => add_months(c.expires.max(now), period),
    };
    c.period = period;
    c.cost = price;
    c.prolongs += 1;
    c.refresh_row();
    Ok(Answer::Ok { id: None })
}

/// Contact fields, for tests that build orders.
#[cfg(test)]
pub(crate) fn contact_pairs() -> Vec<(&'static str, String)> {
    validate::CONTACT_FIELDS
        .iter()
        .map(|f| {
            let v = if f.ends_with("_email") { "ops@example.com".to_owned() } else { format!("x-{f}") };
            (*f, v)
        })
        .collect()
}
