//! `ispcert status NAME [-n NS]`: one view of a certificate, in the style of `cmctl status`: what
//! the spec asks for, its conditions, the order and its billing state, the subscription's end, the
//! renewal time, a reissue under way, the Secret as it is (serial, names, notAfter, whether its
//! key fits), the issuer's readiness and the recent events. It only reads.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use secrecy::SecretString;

use crate::crd::{ClusterIspIssuer, IspCertificate, IspIssuer, IssuerKind};
use crate::pki::chain::{self, CertInfo};
use crate::pki::keys;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The IspCertificate.
    pub name: String,
    /// Its namespace; defaults to the kubeconfig context's.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// A kubeconfig file; without it the in-cluster config, then ~/.kube/config, are used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// What the view shows, gathered from the API.
pub struct View {
    pub cert: IspCertificate,
    /// The issuer's Ready condition, `None` when the issuer does not exist.
    pub issuer_ready: Option<Option<Condition>>,
    /// The Secret's leaf and whether its `tls.key` fits it; `None` when there is no Secret.
    pub secret: Option<Result<(CertInfo, bool), String>>,
    /// Type, reason, note and time of the latest events, oldest first.
    pub events: Vec<(String, String, String, String)>,
}

pub async fn run(args: StatusArgs) -> ExitCode {
    match gather(&args).await {
        Ok(view) => {
            print!("{}", render(&view));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ispcert status: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn gather(args: &StatusArgs) -> Result<View, String> {
    let client = super::operator::kube_client(args.kubeconfig.as_deref()).await?;
    let ns = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let certs: Api<IspCertificate> = Api::namespaced(client.clone(), &ns);
    let name = &args.name;
    let cert = certs.get_opt(name).await.map_err(|e| format!("read IspCertificate {ns}/{name}: {e}"))?;
    let cert = cert.ok_or_else(|| format!("IspCertificate {ns}/{name} does not exist"))?;
    let issuer_ref = &cert.spec.issuer_ref;
    let conditions = match issuer_ref.kind {
        IssuerKind::IspIssuer => Api::<IspIssuer>::namespaced(client.clone(), &ns)
            .get_opt(&issuer_ref.name)
            .await
            .map(|i| i.map(|i| i.status.unwrap_or_default().conditions)),
        IssuerKind::ClusterIspIssuer => Api::<ClusterIspIssuer>::all(client.clone())
            .get_opt(&issuer_ref.name)
            .await
            .map(|i| i.map(|i| i.status.unwrap_or_default().conditions)),
    }
    .map_err(|e| format!("read the issuer: {e}"))?;
    let issuer_ready = conditions.map(|c| c.into_iter().find(|c| c.type_ == "Ready"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets
        .get_opt(&cert.spec.secret_name)
        .await
        .map_err(|e| format!("read Secret {ns}/{}: {e}", cert.spec.secret_name))?
        .map(|s| served(&s));
    let events: Api<Event> = Api::namespaced(client, &ns);
    let mut list: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list events: {e}"))?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.name.as_deref() == Some(name) && r.kind.as_deref() == Some("IspCertificate"))
        })
        .collect();
    list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    let events = list
        .into_iter()
        .rev()
        .take(10)
        .rev()
        .map(|e| {
            let at = e.metadata.creation_timestamp.map(|t| minute(&t)).unwrap_or_default();
            (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.note.unwrap_or_default(), at)
        })
        .collect();
    Ok(View { cert, issuer_ready, secret, events })
}

/// The leaf a Secret serves and whether its key fits it.
fn served(secret: &Secret) -> Result<(CertInfo, bool), String> {
    let data = secret.data.clone().unwrap_or_default();
    let crt = data.get("tls.crt").ok_or("no tls.crt")?;
    let leaf = chain::order(chain::certificates_in_pem(&crt.0)).map_err(|e| e.to_string())?.leaf_info();
    let key = data.get("tls.key").and_then(|k| String::from_utf8(k.0.clone()).ok()).map(SecretString::from);
    let fits = key.and_then(|k| keys::public_key_bits(&k).ok()).is_some_and(|bits| bits == leaf.public_key_bits);
    Ok((leaf, fits))
}

fn minute(t: &Time) -> String {
    t.0.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The view as text. Pure.
pub fn render(view: &View) -> String {
    let c = &view.cert;
    let (spec, status) = (&c.spec, c.status.clone().unwrap_or_default());
    let mut out = String::new();
    let _ = writeln!(out, "IspCertificate {}/{}", c.namespace().unwrap_or_default(), c.name_any());
    let mut names = vec![spec.common_name.clone()];
    names.extend(spec.alt_names.iter().cloned());
    let _ = writeln!(out, "  names:         {}", names.join(", "));
    let _ = writeln!(
        out,
        "  product:       {} ({} months), deletionPolicy {:?}",
        spec.product, spec.period, spec.deletion_policy
    );
    let issuer = match &view.issuer_ready {
        None => "does not exist".to_string(),
        Some(None) => "not checked yet".to_string(),
        Some(Some(ready)) => format!("Ready={} ({}) {}", ready.status, ready.reason, ready.message),
    };
    let _ = writeln!(out, "  issuer:        {:?} {}: {issuer}", spec.issuer_ref.kind, spec.issuer_ref.name);
    let _ = writeln!(out, "  conditions:");
    for cond in &status.conditions {
        let _ = writeln!(out, "    {:<19} {:<6} {:<22} {}", cond.type_, cond.status, cond.reason, cond.message);
    }
    let when = |t: &Option<Time>| t.as_ref().map(minute).unwrap_or_else(|| "-".into());
    let order = status.order_id.clone().unwrap_or_else(|| "-".into());
    let state = status.order_state.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "  order:         {order} ({state}), ordered {}", when(&status.ordered_at));
    let _ = writeln!(out, "  subscription:  ends {}", when(&status.subscription_end));
    let _ = writeln!(out, "  renewal:       {}", when(&status.renewal_time));
    if let Some(re) = &status.reissue {
        let _ = writeln!(
            out,
            "  reissue:       {} requested {} (attempt {})",
            re.reason,
            minute(&re.requested_at),
            re.attempts.unwrap_or(1)
        );
    }
    let secret = match &view.secret {
        None => "missing".to_string(),
        Some(Err(why)) => format!("unreadable: {why}"),
        Some(Ok((leaf, fits))) => format!(
            "serial {}, {}, notAfter {}, key {}",
            leaf.serial,
            leaf.names().join(", "),
            leaf.not_after.strftime("%Y-%m-%d %H:%M:%S UTC"),
            if *fits { "matches" } else { "DOES NOT MATCH" }
        ),
    };
    let _ = writeln!(out, "  secret:        {}: {secret}", spec.secret_name);
    let _ = writeln!(out, "  events:");
    for (type_, reason, note, at) in &view.events {
        let _ = writeln!(out, "    {at}  {type_:<7} {reason:<20} {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_names_everything_a_person_looks_for() {
        let cert: IspCertificate = serde_json::from_value(serde_json::json!({
            "apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
            "metadata": {"name": "www", "namespace": "web"},
            "spec": {"issuerRef": {"name": "billing"}, "product": "alphassl", "commonName": "www.example.com",
                     "approverMailbox": "admin", "secretName": "www-tls"},
            "status": {"orderId": "3100001", "orderState": "active/issued", "renewalTime": "2027-03-01T00:00:00Z",
                       "subscriptionEnd": "2027-12-01T00:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Issued", "message": "valid",
                                       "lastTransitionTime": "2026-12-01T00:00:00Z"}]}
        }))
        .unwrap();
        let leaf = CertInfo {
            serial: "0a:0b".into(),
            dns_names: vec!["www.example.com".into()],
            not_after: "2027-06-01T00:00:00Z".parse().unwrap(),
            ..Default::default()
        };
        let view = View {
            cert,
            issuer_ready: Some(None),
            secret: Some(Ok((leaf, true))),
            events: vec![("Normal".into(), "Issued".into(), "stored".into(), "2026-12-01 00:00:00 UTC".into())],
        };
        let text = render(&view);
        for expected in [
            "IspCertificate web/www",
            "names:         www.example.com",
            "IspIssuer billing: not checked yet",
            "Ready               True   Issued                 valid",
            "order:         3100001 (active/issued)",
            "subscription:  ends 2027-12-01 00:00:00 UTC",
            "renewal:       2027-03-01 00:00:00 UTC",
            "www-tls: serial 0a:0b, www.example.com, notAfter 2027-06-01 00:00:00 UTC, key matches",
            "Normal  Issued               stored",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
    }
}
