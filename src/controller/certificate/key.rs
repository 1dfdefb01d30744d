//! The private key stage: the key exists and is stored in the cluster before any CSR made from it
//! is sent anywhere.

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use secrecy::SecretString;

use super::{Flow, Run, Stop};
use crate::billing::CsrRequest;
use crate::controller::context::Error;
use crate::controller::decide::{KeyAction, KeyMeta, key_action, same_names};
use crate::controller::issuers::IssuerView;
use crate::controller::plan::{KeyPlan, Plan};
use crate::controller::secrets::{
    self, LABEL_CERTIFICATE, StoredKey, key_secret, key_secret_name, read_csr_secret, read_key_secret,
};
use crate::pki::keys::{self, CsrSubject, KeyAlgorithm};

/// The key and CSR a certificate is (or will be) issued for.
pub struct Material {
    pub key: SecretString,
    pub csr: String,
    /// The raw public key, to match certificates against.
    pub bits: Vec<u8>,
}

fn csr_subject(plan: &Plan) -> CsrSubject {
    CsrSubject {
        country: plan.subject.country.clone(),
        state: plan.subject.state.clone(),
        locality: plan.subject.locality.clone(),
        organization: plan.subject.organization.clone(),
        organizational_unit: plan.subject.organizational_unit.clone(),
    }
}

pub async fn ensure(run: &mut Run<'_>, plan: &Plan, issuer: &IssuerView) -> Result<Flow<Material>, Error> {
    match &plan.key {
        KeyPlan::Secret(r) => from_user_secret(run, plan, r).await,
        KeyPlan::Cluster { .. } | KeyPlan::Billing => stored(run, plan, issuer, false).await,
    }
}

/// A new key and CSR (key rotation on reissue), stored before the CSR is used.
pub async fn rotate(run: &mut Run<'_>, plan: &Plan, issuer: &IssuerView) -> Result<Flow<Material>, Error> {
    stored(run, plan, issuer, true).await
}

async fn from_user_secret(
    run: &mut Run<'_>,
    plan: &Plan,
    r: &crate::crd::CsrSecretRef,
) -> Result<Flow<Material>, Error> {
    let invalid = |m: String| Ok(Flow::Stop(Stop::blocked(super::r::CSR_SECRET_INVALID, m, None)));
    let api: Api<Secret> = Api::namespaced(run.ctx.shared.client.clone(), &run.ns);
    let Some(secret) = api.get_opt(&r.name).await? else {
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
    Ok(Flow::Go(Material { key, csr, bits }))
}

/// When the key Secret is lost but the output Secret (ours) still holds the key of its
/// certificate, that key is taken back instead of making a new one, so no reissue is needed.
async fn key_from_output_secret(run: &Run<'_>, plan: &Plan) -> Result<Option<StoredKey>, Error> {
    let api: Api<Secret> = Api::namespaced(run.ctx.shared.client.clone(), &run.ns);
    let Some(out) = api.get_opt(&plan.secret_name).await? else { return Ok(None) };
    if !secrets::managed_for(&out, &run.name) {
        return Ok(None);
    }
    let Some(key) = out.data.as_ref().and_then(|d| d.get("tls.key")).and_then(|b| String::from_utf8(b.0.clone()).ok())
    else {
        return Ok(None);
    };
    let key = SecretString::from(key);
    let Ok(algorithm) = keys::algorithm_of(&key) else { return Ok(None) };
    let source = match plan.key {
        KeyPlan::Billing => "billing",
        _ => "cluster",
    };
    let csr = keys::csr(&key, &plan.common_name, &plan.alt_names, &csr_subject(plan))?;
    Ok(Some(StoredKey {
        key,
        csr,
        meta: KeyMeta { algorithm, source: source.into(), csr_names: plan.names() },
        // Not stored yet: the caller writes it as the key Secret.
    }))
}

async fn stored(run: &mut Run<'_>, plan: &Plan, issuer: &IssuerView, rotate: bool) -> Result<Flow<Material>, Error> {
    let api: Api<Secret> = Api::namespaced(run.ctx.shared.client.clone(), &run.ns);
    let name = key_secret_name(&run.name);
    let existing = api.get_opt(&name).await?;
    // A key Secret labelled with our name but owned by an earlier IspCertificate of the same
    // name (deleted, then applied again) is ours to take over: its owner reference is rewritten.
    let mut stale_owner = false;
    if let Some(s) = &existing {
        if s.labels().get(LABEL_CERTIFICATE).is_none_or(|l| *l != run.name) {
            return Ok(Flow::Stop(Stop::blocked(
                super::r::SECRET_NOT_MANAGED,
                format!(
                    "Secret {name}, where this certificate keeps its private key, exists and belongs to something else; remove or rename it"
                ),
                None,
            )));
        }
        stale_owner = !s.owner_references().iter().any(|o| o.uid == run.uid);
    }
    let mut stored = existing.as_ref().and_then(read_key_secret);
    let recovered = stored.is_none() && !rotate && {
        stored = key_from_output_secret(run, plan).await?;
        stored.is_some()
    };
    let action = key_action(plan, stored.as_ref().map(|s| &s.meta), run.status.order_id.is_some(), rotate);
    let names = plan.names();
    let (key, csr, meta) = match (action, stored) {
        (KeyAction::Keep, Some(s)) if !recovered && !stale_owner => {
            let bits = keys::public_key_bits(&s.key)?;
            return Ok(Flow::Go(Material { key: s.key, csr: s.csr, bits }));
        }
        (KeyAction::Keep, Some(s)) => (s.key, s.csr, s.meta),
        (KeyAction::NewCsr, Some(s)) => {
            let csr = keys::csr(&s.key, &plan.common_name, &plan.alt_names, &csr_subject(plan))?;
            (s.key, csr, KeyMeta { csr_names: names, ..s.meta })
        }
        _ => match &plan.key {
            KeyPlan::Cluster { algorithm, .. } => {
                let algorithm: KeyAlgorithm = *algorithm;
                // RSA 4096 takes about a second: keep it off the async workers.
                let key = tokio::task::spawn_blocking(move || keys::generate(algorithm))
                    .await
                    .map_err(|e| Error::Internal(format!("key generation task: {e}")))??;
                let csr = keys::csr(&key, &plan.common_name, &plan.alt_names, &csr_subject(plan))?;
                run.event(
                    EventType::Normal,
                    super::r::KEY_GENERATED,
                    format!("generated a {} private key; it stays in Secret {name}", algorithm.as_str()),
                );
                (key, csr, KeyMeta { algorithm: Some(algorithm), source: "cluster".into(), csr_names: names })
            }
            _ => {
                let handle = super::go!(run.handle(issuer).await);
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
                run.event(
                    EventType::Normal,
                    super::r::KEY_GENERATED,
                    format!("the billing made the key and CSR; the key is kept in Secret {name}"),
                );
                (pair.key, pair.csr, KeyMeta { algorithm: None, source: "billing".into(), csr_names: names })
            }
        },
    };
    let bits = keys::public_key_bits(&key)?;
    let owner = run
        .cert
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Internal("the certificate has no uid for an owner reference".into()))?;
    let mut desired = key_secret(&name, &run.ns, &run.name, owner, &key, &csr, &meta);
    // The key is stored before any CSR made from it leaves the operator: a crash after this
    // point finds it again; a crash before it has sent nothing.
    match existing {
        Some(old) => {
            desired.metadata.resource_version = old.resource_version();
            api.replace(
                &name,
                &PostParams { field_manager: Some(run.ctx.shared.settings.manager.clone()), ..Default::default() },
                &desired,
            )
            .await?;
        }
        None => {
            api.create(
                &PostParams { field_manager: Some(run.ctx.shared.settings.manager.clone()), ..Default::default() },
                &desired,
            )
            .await?;
        }
    }
    Ok(Flow::Go(Material { key, csr, bits }))
}
