//! The private key stage: the key exists and is stored in the cluster before any CSR made from it
//! is sent anywhere.

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use secrecy::SecretString;

use super::flow::{Flow, Stop, go};
use super::ledger::Ledger;
use super::run::Run;
use super::settle::Note;
use crate::billing::CsrRequest;
use crate::controller::context::{Error, KubeResult};
use crate::controller::decide::{KeyAction, KeyMeta, key_action, same_names};
use crate::controller::issuers::IssuerView;
use crate::controller::plan::{KeyPlan, Plan};
use crate::controller::reasons as r;
use crate::controller::secrets::{
    self, LABEL_CERTIFICATE, StoredKey, key_secret, key_secret_name, read_csr_secret, read_key_secret,
};
use crate::pki::keys::{self, KeyAlgorithm};

/// The key and CSR a certificate is (or will be) issued for.
pub struct Material {
    pub key: SecretString,
    pub csr: String,
    /// The raw public key, to match certificates against.
    pub bits: Vec<u8>,
    /// The key this one replaced, kept until a certificate for the new key is stored: the
    /// served certificate may still need it.
    pub previous: Option<SecretString>,
}

/// The key material, made and stored first if needed. `output` is the certificate's Secret as
/// read in this reconcile.
pub async fn ensure(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    issuer: &IssuerView,
    output: Option<&Secret>,
) -> Result<Flow<Material>, Error> {
    match &plan.key {
        KeyPlan::Secret(r) => from_user_secret(run, plan, r).await,
        KeyPlan::Cluster { .. } | KeyPlan::Billing => stored(run, ledger, plan, issuer, output, false).await,
    }
}

/// A new key and CSR (key rotation on reissue), stored before the CSR is used.
pub async fn rotate(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    issuer: &IssuerView,
) -> Result<Flow<Material>, Error> {
    stored(run, ledger, plan, issuer, None, true).await
}

async fn from_user_secret(run: &Run<'_>, plan: &Plan, r: &crate::crd::CsrSecretRef) -> Result<Flow<Material>, Error> {
    // The user's Secret is not watched (it carries no label of ours): look again now and then.
    let invalid =
        |m: String| Ok(Flow::Stop(Stop::blocked(r::CSR_SECRET_INVALID, m, Some(std::time::Duration::from_secs(60)))));
    let api: Api<Secret> = Api::namespaced(run.ctx.shared.client.clone(), &run.ns);
    let Some(secret) = api.get_opt(&r.name).await.doing(|| format!("read Secret {}/{}", run.ns, r.name))? else {
        return invalid(format!(
            "Secret {} named by privateKey.secretRef does not exist in namespace {}",
            r.name, run.ns
        ));
    };
    let (csr, key) = match read_csr_secret(
        &secret,
        r.csr_key.as_deref().unwrap_or("tls.csr"),
        r.key_key.as_deref().unwrap_or("tls.key"),
    ) {
        Ok(x) => x,
        Err(e) => return invalid(format!("Secret {} {e}", r.name)),
    };
    let info = match keys::inspect_csr(&csr) {
        Ok(i) => i,
        Err(e) => return invalid(format!("Secret {}: {e}", r.name)),
    };
    let bits = match keys::public_key_bits(&key) {
        Ok(b) => b,
        Err(e) => return invalid(format!("Secret {}: {e}", r.name)),
    };
    if bits != info.public_key_bits {
        return invalid(format!("Secret {}: the private key does not belong to the CSR", r.name));
    }
    if !same_names(&info.names(), &plan.names()) {
        return invalid(format!(
            "Secret {}: the CSR covers {} but the spec asks for {}",
            r.name,
            info.names().join(", "),
            plan.names().join(", ")
        ));
    }
    Ok(Flow::Go(Material { key, csr, bits, previous: None }))
}

/// When the key Secret is lost but the output Secret still holds the key of this very order's
/// certificate, that key is taken back instead of making a new one, so no reissue is needed. Only
/// a key that came with `status.orderId` qualifies: a Secret left by another order (another
/// product, another key source) never lends its key, so a cluster key can never be sent to the
/// billing as if the billing had made it.
fn key_from_output_secret(
    run: &Run<'_>,
    order: Option<&str>,
    plan: &Plan,
    out: Option<&Secret>,
) -> Result<Option<StoredKey>, Error> {
    let Some(out) = out else { return Ok(None) };
    if !secrets::managed_for(out, &run.name)
        || order.is_none()
        || out.annotations().get(secrets::ANN_ORDER_ID).map(String::as_str) != order
    {
        return Ok(None);
    }
    let Some(key) = out.data.as_ref().and_then(|d| d.get("tls.key")).and_then(|b| String::from_utf8(b.0.clone()).ok())
    else {
        return Ok(None);
    };
    rebuild(SecretString::from(key), plan, None)
}

/// A stored key whose CSR or annotations are gone (pruned by a GitOps tool, restored from a
/// backup): the key is kept and the rest is made again from it.
fn rebuild(key: SecretString, plan: &Plan, source: Option<String>) -> Result<Option<StoredKey>, Error> {
    let Ok(algorithm) = keys::algorithm_of(&key) else { return Ok(None) };
    let source = source.unwrap_or_else(|| match plan.key {
        KeyPlan::Billing => "billing".into(),
        _ => "cluster".into(),
    });
    let csr = keys::csr(&key, &plan.common_name, &plan.alt_names, &plan.csr_subject())?;
    Ok(Some(StoredKey { key, csr, meta: KeyMeta { algorithm, source, csr_names: plan.names() }, previous: None }))
}

async fn stored(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    issuer: &IssuerView,
    output: Option<&Secret>,
    rotate: bool,
) -> Result<Flow<Material>, Error> {
    let api: Api<Secret> = Api::namespaced(run.ctx.shared.client.clone(), &run.ns);
    let name = key_secret_name(&run.name);
    let existing = api.get_opt(&name).await.doing(|| format!("read Secret {}/{name}", run.ns))?;
    if let Some(s) = &existing
        && s.labels().get(LABEL_CERTIFICATE).is_none_or(|l| *l != run.name)
    {
        return Ok(Flow::Stop(Stop::blocked(
            r::SECRET_NOT_MANAGED,
            format!(
                "Secret {name}, where this certificate keeps its private key, exists and belongs to something else; remove or rename it"
            ),
            Some(std::time::Duration::from_secs(60)),
        )));
    }
    let status = ledger.status();
    // An attempt in flight may have placed an order with the stored key: keep it as if ordered.
    let ordered = status.order_id.is_some() || status.order_attempt.is_some();
    let (mut stored, mut dirty) = read_stored(existing.as_ref(), plan)?;
    if stored.is_none() && !rotate {
        stored = key_from_output_secret(run, status.order_id.as_deref(), plan, output)?;
        dirty |= stored.is_some();
    }
    // A CSR that is not the key's (a restore from two backups, a hand edit) would get a
    // certificate for another key, reissue after reissue: it is made again from the key. One
    // made in the cluster for another subject (the spec's `subject` changed) is made again too.
    if let Some(s) = stored.as_mut()
        && let Some(why) = csr_out_of_date(s, plan)
    {
        s.csr = keys::csr(&s.key, &plan.common_name, &plan.alt_names, &plan.csr_subject())?;
        s.meta.csr_names = plan.names();
        dirty = true;
        ledger.note(Note::normal(
            r::KEY_GENERATED,
            format!("the CSR in Secret {name} {why}; made it again from the key"),
        ));
    }
    let action = key_action(plan, stored.as_ref().map(|s| &s.meta), ordered, rotate);
    let stored = match (action, stored) {
        (KeyAction::Keep, Some(s)) if !dirty => {
            let bits = keys::public_key_bits(&s.key)?;
            return Ok(Flow::Go(Material { key: s.key, csr: s.csr, bits, previous: s.previous }));
        }
        (KeyAction::Keep, Some(s)) => s,
        (KeyAction::NewCsr, Some(s)) => {
            let csr = keys::csr(&s.key, &plan.common_name, &plan.alt_names, &plan.csr_subject())?;
            StoredKey { csr, meta: KeyMeta { csr_names: plan.names(), ..s.meta }, ..s }
        }
        (_, old) => go!(make(run, ledger, plan, issuer, old).await?),
    };
    let bits = keys::public_key_bits(&stored.key)?;
    // The key is stored before any CSR made from it leaves the operator: a crash after this
    // point finds it again; a crash before it has sent nothing.
    write(run, &name, &stored, existing.as_ref()).await?;
    Ok(Flow::Go(Material { key: stored.key, csr: stored.csr, bits, previous: stored.previous }))
}

/// Why a stored CSR must be made again from its key, if it must: it does not carry the key's
/// public key, or (made in the cluster) it carries another subject than the spec's.
fn csr_out_of_date(stored: &StoredKey, plan: &Plan) -> Option<&'static str> {
    let csr = keys::inspect_csr(&stored.csr).ok();
    let fits_key = matches!((&csr, keys::public_key_bits(&stored.key)), (Some(c), Ok(b)) if c.public_key_bits == b);
    if !fits_key {
        return Some("did not belong to its private key");
    }
    let cluster = matches!(plan.key, KeyPlan::Cluster { .. }) && stored.meta.source == "cluster";
    (cluster && csr.is_some_and(|c| c.subject.line() != plan.csr_subject().line()))
        .then_some("carried another subject than the spec")
}

/// What the key Secret holds, and whether it must be written again (rebuilt, or carrying an
/// owner reference from an earlier version, which would let garbage collection take the key).
fn read_stored(existing: Option<&Secret>, plan: &Plan) -> Result<(Option<StoredKey>, bool), Error> {
    let Some(s) = existing else { return Ok((None, false)) };
    let owned = !s.owner_references().is_empty();
    match read_key_secret(s) {
        Some(k) if k.is_described() => Ok((Some(k), owned)),
        partial => {
            let key = s.data.as_ref().and_then(|d| d.get("tls.key")).and_then(|b| String::from_utf8(b.0.clone()).ok());
            let source = s.annotations().get(secrets::ANN_KEY_SOURCE).cloned().filter(|v| !v.is_empty());
            let rebuilt = match key {
                Some(k) => rebuild(SecretString::from(k), plan, source)?.map(|mut rebuilt| {
                    rebuilt.previous = partial.and_then(|p| p.previous);
                    rebuilt
                }),
                None => None,
            };
            Ok((rebuilt, true))
        }
    }
}

/// A new key and CSR, made in the cluster or by the billing. The key being replaced may be the
/// one the served certificate needs until its successor is issued: it is kept beside the new one
/// until then. If a replacement is already pending, the served certificate belongs to the earlier
/// key, which stays.
async fn make(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    issuer: &IssuerView,
    old: Option<StoredKey>,
) -> Result<Flow<StoredKey>, Error> {
    let previous = old.map(|o| o.previous.unwrap_or(o.key));
    let name = key_secret_name(&run.name);
    let names = plan.names();
    let (key, csr, meta) = match &plan.key {
        KeyPlan::Cluster { algorithm, .. } => {
            let algorithm: KeyAlgorithm = *algorithm;
            // RSA 4096 takes about a second: keep it off the async workers, one per core.
            let permits = &run.ctx.shared.key_generations.0;
            let _permit = permits.acquire().await.map_err(|e| Error::Internal(format!("key generation: {e}")))?;
            let key = tokio::task::spawn_blocking(move || keys::generate(algorithm))
                .await
                .map_err(|e| Error::Internal(format!("key generation task: {e}")))??;
            let csr = keys::csr(&key, &plan.common_name, &plan.alt_names, &plan.csr_subject())?;
            ledger.note(Note::normal(
                r::KEY_GENERATED,
                format!("generated a {} private key; it stays in Secret {name}", algorithm.as_str()),
            ));
            (key, csr, KeyMeta { algorithm: Some(algorithm), source: "cluster".into(), csr_names: names })
        }
        _ => {
            let handle = go!(run.handle(issuer));
            let request = CsrRequest {
                pricelist: plan.pricelist,
                period: plan.period,
                common_name: plan.common_name.clone(),
                alt_names: plan.alt_names.clone(),
                subject: plan.billing_subject(),
            };
            let pair = match handle.client.generate_key_and_csr(&request).await {
                Ok(p) => p,
                Err(e) => return Ok(Flow::Stop(run.billing_stop(issuer, e, "the billing could not make a key"))),
            };
            ledger.note(Note::normal(
                r::KEY_GENERATED,
                format!("the billing made the key and CSR; the key is kept in Secret {name}"),
            ));
            (pair.key, pair.csr, KeyMeta { algorithm: None, source: "billing".into(), csr_names: names })
        }
    };
    Ok(Flow::Go(StoredKey { key, csr, meta, previous }))
}

/// Writes the key Secret: created when absent, replaced (conflict-checked) when present.
async fn write(run: &Run<'_>, name: &str, stored: &StoredKey, existing: Option<&Secret>) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(run.ctx.shared.client.clone(), &run.ns);
    let params = PostParams { field_manager: Some(run.ctx.shared.settings.manager.clone()), ..Default::default() };
    let mut desired = key_secret(name, &run.ns, &run.name, stored);
    let doing = || format!("write Secret {}/{name}", run.ns);
    match existing {
        Some(old) => {
            desired.metadata.resource_version = old.resource_version();
            api.replace(name, &params, &desired).await.doing(doing)?;
        }
        None => {
            api.create(&params, &desired).await.doing(doing)?;
        }
    }
    Ok(())
}

/// Drops the previous key once a certificate for the current one is stored.
pub async fn forget_previous(run: &Run<'_>, material: &Material) -> Result<(), Error> {
    if material.previous.is_none() {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(run.ctx.shared.client.clone(), &run.ns);
    let name = key_secret_name(&run.name);
    let Some(existing) = api.get_opt(&name).await.doing(|| format!("read Secret {}/{name}", run.ns))? else {
        return Ok(());
    };
    let Some(mut stored) = read_key_secret(&existing) else { return Ok(()) };
    stored.previous = None;
    write(run, &name, &stored, Some(&existing)).await
}
