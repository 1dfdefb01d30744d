//! Storing a certificate that fits: the Secret is written only when it differs, the event says
//! what happened to it, the replaced key is dropped, and the renewal is scheduled.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::flow::{Flow, Stop};
use super::follow::Order;
use super::key;
use super::ledger::{Change, Ledger, Stored};
use super::output::{apply_secret, until};
use super::run::Run;
use super::serving::renewal_of;
use super::settle::Note;
use crate::controller::context::Error;
use crate::controller::context::secret_key;
use crate::controller::reasons as r;
use crate::controller::secrets::{tls_secret, up_to_date};
use crate::pki::chain::{CertInfo, Chain};

pub async fn store(
    run: &Run<'_>,
    ledger: &mut Ledger,
    order: &Order<'_>,
    chain: Chain,
    existing: Option<&Secret>,
) -> Result<Flow<()>, Error> {
    let plan = order.plan;
    let info = chain.leaf_info();
    let desired = tls_secret(plan, &order.provenance(run), &run.ns, &chain, &order.material.key);
    let version = match existing.filter(|e| up_to_date(e, &desired)) {
        Some(e) => e.resource_version(),
        None => {
            let written = apply_secret(run, &desired).await?;
            let known = ledger.status().serial_number.as_deref();
            ledger.note(written_note(&info, &plan.secret_name, existing.is_some(), known));
            written.resource_version()
        }
    };
    if let Some(v) = version {
        run.ctx.shared.remember_version(&secret_key(&run.ns, &plan.secret_name), v);
    }
    key::forget_previous(run, order.material).await?;
    // A certificate issued now answers any renewal asked for until now.
    if let Some(value) = super::serving::renew_request(run, ledger.status()) {
        ledger.record(Change::RenewRequestHandled(value));
    }
    let renewal = renewal_of(run, order.plan, &info, ledger.status()).at();
    ledger.record(Change::Stored(Stored {
        serial: info.serial.clone(),
        not_before: info.not_before,
        not_after: info.not_after,
        names: info.names(),
        renewal,
    }));
    // An empty message: `settle` words it from the status just set.
    // Without a renewal the certificate is looked at again when it expires (`until` caps every
    // wait at a day, which also walks it through the subscription's warning time).
    Ok(Flow::Stop(Stop::ready("", Some(until(renewal.unwrap_or(info.not_after))))))
}

/// The event of a Secret write: restored (it was missing, the certificate was known), updated
/// (same certificate), or a certificate newly stored. Pure.
fn written_note(info: &CertInfo, secret: &str, existed: bool, known_serial: Option<&str>) -> Note {
    match (existed, known_serial) {
        (false, Some(_)) => Note::normal(
            r::SECRET_RESTORED,
            format!("Secret {secret} was missing; restored it from the billing without a new order"),
        ),
        (true, Some(old)) if old == info.serial => Note::normal(r::SECRET_WRITTEN, format!("Secret {secret} updated")),
        _ => Note::normal(
            r::ISSUED,
            format!(
                "certificate {} for {} stored in Secret {secret}, valid until {}",
                info.serial,
                info.names().join(", "),
                info.not_after.strftime("%Y-%m-%d %H:%M UTC")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_says_what_happened_to_the_secret() {
        let info = CertInfo {
            serial: "0a".into(),
            dns_names: vec!["a.example.com".into()],
            not_after: "2027-01-01T00:00:00Z".parse().unwrap(),
            ..Default::default()
        };
        let reason = |existed, known| written_note(&info, "tls", existed, known).reason;
        assert_eq!(reason(false, None), r::ISSUED);
        assert_eq!(reason(false, Some("09")), r::SECRET_RESTORED);
        assert_eq!(reason(true, Some("0a")), r::SECRET_WRITTEN);
        assert_eq!(reason(true, Some("09")), r::ISSUED, "a new certificate replaced the old one");
        assert_eq!(
            written_note(&info, "tls", true, None).text,
            "certificate 0a for a.example.com stored in Secret tls, valid until 2027-01-01 00:00 UTC"
        );
    }
}
