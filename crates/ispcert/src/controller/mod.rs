//! The operator: controllers for issuers and certificates, wired to the API server.
//!
//! Per watched scope (all namespaces, or each namespace given) there is one issuer controller
//! and one certificate controller with their own caches; one controller serves cluster issuers.
//! Certificates are triggered by their own changes, by their issuers' changes, and by changes of
//! the Secrets they own, which are watched by label and metadata only.

pub mod account;
pub mod backoff;
pub mod certificate;
pub mod claims;
pub mod conditions;
pub mod context;
pub mod decide;
pub mod index;
pub mod issuer;
pub mod issuers;
pub mod metrics;
pub mod plan;
pub mod reasons;
pub mod renewal;
pub mod secrets;
pub mod series;
pub mod settings;
pub mod status;
pub mod unreadable;

use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

pub use context::{Context, Error, Shared};
pub use metrics::Metrics;
pub use settings::Settings;

use crate::crd::{ClusterIspIssuer, IspCertificate, IspIssuer, IssuerKind};
use issuers::IssuerKey;

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the ispcert CRDs are not installed in this cluster ({0}); install them first: kubectl apply -f crds/ (or `ispcert crds | kubectl apply -f -`)"
    )]
    CrdsMissing(String),
    #[error("cannot reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// With the causes: reqwest's "builder error" alone hides a missing CA bundle.
    #[error("cannot set up HTTPS for the billing: {}", crate::billing::with_causes(.0))]
    Http(#[from] reqwest::Error),
}

/// Fails fast when a CRD is missing, instead of watching nothing forever.
/// The namespaced resources are probed where the operator watches them (with `--namespace`, its
/// RBAC may allow nothing else).
pub async fn check_crds(client: &kube::Client, namespaces: &[String]) -> Result<(), StartError> {
    let probe = ListParams::default().limit(1);
    let missing = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    let scope = namespaces.first().map(String::as_str);
    for result in [
        api_in::<IspCertificate>(client, scope).list_metadata(&probe).await.map(|_| "ispcertificates"),
        api_in::<IspIssuer>(client, scope).list_metadata(&probe).await.map(|_| "ispissuers"),
        Api::<ClusterIspIssuer>::all(client.clone()).list_metadata(&probe).await.map(|_| "clusterispissuers"),
    ] {
        match result {
            Ok(_) => {}
            Err(e) if missing(&e) => return Err(StartError::CrdsMissing(e.to_string())),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Issuer re-check requests of one kind and scope, as a controller trigger.
fn rechecks<K>(
    tx: &broadcast::Sender<IssuerKey>,
    kind: IssuerKind,
    namespace: Option<String>,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + 'static,
{
    futures::stream::unfold(tx.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(k) => return Some((k, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter_map(move |k: IssuerKey| {
        let keep = k.kind == kind && namespace.as_ref().is_none_or(|n| *n == k.namespace);
        future::ready(keep.then(|| {
            let r = ObjectRef::<K>::new(&k.name);
            if k.namespace.is_empty() { r } else { r.within(&k.namespace) }
        }))
    })
}

fn api_in<K>(client: &kube::Client, scope: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs every controller until `shutdown` turns true.
pub async fn run(
    client: kube::Client,
    settings: Settings,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), StartError> {
    check_crds(&client, &settings.namespaces).await?;
    let (recheck, _) = broadcast::channel(1024);
    let cluster_issuers =
        Controller::new(Api::<ClusterIspIssuer>::all(client.clone()), cluster_issuer_watch(&settings));
    let (claims, claims_watch) = claims::Claims::watch(&client);
    let (namespaces, namespaces_watch) = namespace_watch(&client);
    let shared = Arc::new(Shared {
        client: client.clone(),
        http: crate::billing::http_pool(settings.billing_timeout)?,
        reporter: Reporter { controller: settings.manager.clone(), instance: std::env::var("POD_NAME").ok() },
        issuers: issuers::IssuerRegistry::new(metrics.list_calls.clone()),
        metrics,
        backoff: Default::default(),
        recheck,
        cluster_issuers: cluster_issuers.store(),
        claims,
        namespaces,
        verified: Default::default(),
        key_generations: Default::default(),
        settings: settings.clone(),
    });
    let mut tasks = vec![
        cluster_issuer_task(cluster_issuers, &shared, &shutdown),
        until_stopped(claims_watch, &shutdown),
        until_stopped(namespaces_watch, &shutdown),
    ];
    for scope in scopes(&settings) {
        let (issuer_task, issuers) = issuer_task(&client, scope.as_deref(), &shared, &shutdown);
        tasks.push(issuer_task);
        tasks.push(certificate_task(&client, scope.as_deref(), &shared, issuers, &shutdown));
    }
    info!(namespaces = ?settings.namespaces, "ispcert controllers running");
    future::join_all(tasks).await;
    info!("ispcert controllers stopped");
    Ok(())
}

type Task = futures::future::BoxFuture<'static, ()>;

/// A watch that runs until the operator stops.
fn until_stopped(
    watch: impl std::future::Future<Output = ()> + Send + 'static,
    shutdown: &watch::Receiver<bool>,
) -> Task {
    let stop = stopped(shutdown.clone());
    async move {
        tokio::select! {
            () = watch => {}
            () = stop => {}
        }
    }
    .boxed()
}

/// The metadata of every namespace (ClusterIspIssuers select namespaces by their labels), and the
/// future that keeps it current.
fn namespace_watch(
    client: &kube::Client,
) -> (reflector::Store<PartialObjectMeta<Namespace>>, impl std::future::Future<Output = ()> + Send + 'static) {
    let (store, writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(|n| n.metadata.managed_fields = None),
    );
    (store, stream.default_backoff().for_each(|_| future::ready(())))
}

/// The annotation `kubectl apply` keeps the whole last-applied manifest in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Resolves when `shutdown` turns true.
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

fn cluster_issuer_watch(settings: &Settings) -> watcher::Config {
    match &settings.cluster_issuer_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    }
}

/// The watched scopes: all namespaces, or each namespace given once (a namespace named twice
/// would get two controllers, reconciling the same objects at once).
fn scopes(settings: &Settings) -> Vec<Option<String>> {
    let mut namespaces = settings.namespaces.clone();
    namespaces.sort();
    namespaces.dedup();
    if namespaces.is_empty() { vec![None] } else { namespaces.into_iter().map(Some).collect() }
}

fn cluster_issuer_task(
    controller: Controller<ClusterIspIssuer>,
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
) -> Task {
    controller
        .reconcile_on(rechecks(&shared.recheck, IssuerKind::ClusterIspIssuer, None))
        .graceful_shutdown_on(stopped(shutdown.clone()))
        .run(issuer::reconcile::<ClusterIspIssuer>, issuer::error_policy::<ClusterIspIssuer>, shared.clone())
        .for_each(|_| future::ready(()))
        .boxed()
}

/// The `IspIssuer` controller of a scope, and its cache (which certificates read).
fn issuer_task(
    client: &kube::Client,
    scope: Option<&str>,
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
) -> (Task, reflector::Store<IspIssuer>) {
    let controller = Controller::new(api_in::<IspIssuer>(client, scope), watcher::Config::default());
    let store = controller.store();
    let task = controller
        .reconcile_on(rechecks(&shared.recheck, IssuerKind::IspIssuer, scope.map(str::to_string)))
        .graceful_shutdown_on(stopped(shutdown.clone()))
        .run(issuer::reconcile::<IspIssuer>, issuer::error_policy::<IspIssuer>, shared.clone())
        .for_each(|_| future::ready(()))
        .boxed();
    (task, store)
}

/// The certificate controller of a scope: woken by its certificates' spec, annotation and
/// finalizer changes, by changes of the Secrets they own, and by their issuers' changes.
fn certificate_task(
    client: &kube::Client,
    scope: Option<&str>,
    shared: &Arc<Shared>,
    issuers: reflector::Store<IspIssuer>,
    shutdown: &watch::Receiver<bool>,
) -> Task {
    // Our own status writes must not trigger the next reconcile (a failure would retry at once
    // instead of after its backoff): only changes of the spec (generation), the annotations (the
    // clean-up way out) and the finalizers wake a certificate up; deletion bumps the generation.
    let (cert_store, cert_writer) = reflector::store::<IspCertificate>();
    let secret_names = Arc::new(context::SecretNames::default());
    let names = secret_names.clone();
    // Raw objects, typed one by one: one that cannot be read must not stop the list (see
    // `unreadable`).
    let reader = unreadable::Reader::new(shared.clone(), cert_store.clone());
    let raw = ApiResource::erase::<IspCertificate>(&());
    let raw_api: Api<DynamicObject> = match scope {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &raw),
        None => Api::all_with(client.clone(), &raw),
    };
    let cert_events = watcher(raw_api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            future::ready(match event {
                Ok(e) => reader.event(e).map(Ok),
                Err(e) => Some(Err(e)),
            })
        })
        // Nothing reads managedFields or the copy of the manifest `kubectl apply` keeps; they
        // are often the largest part of a cached object.
        .modify(|c: &mut IspCertificate| {
            c.metadata.managed_fields = None;
            if let Some(a) = c.metadata.annotations.as_mut() {
                a.remove(LAST_APPLIED);
            }
            // An emptied map keeps its node (about 0.5 KiB).
            if c.metadata.annotations.as_ref().is_some_and(|a| a.is_empty()) {
                c.metadata.annotations = None;
            }
        })
        .inspect_ok(move |event| names.apply(event, context::secret_name_entry))
        .reflect(cert_writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::annotations).combine(predicates::finalizers),
            Default::default(),
        );
    // Metadata only, and only Secrets carrying our label: memory stays flat however many other
    // Secrets the cluster holds. Of each, three facts are kept (`SecretSeen`), not the object.
    let secrets_seen = Arc::new(context::SecretsSeen::default());
    let seen = secrets_seen.clone();
    let secret_events = watcher(
        api_in::<PartialObjectMeta<Secret>>(client, scope),
        watcher::Config::default().labels(secrets::LABEL_CERTIFICATE),
    )
    .default_backoff()
    .inspect_ok(move |event| seen.apply(event, |m| secrets::SecretSeen::of(&m.metadata)))
    .touched_objects();
    let namespaced_map = by_issuer(cert_store.clone(), IssuerKind::IspIssuer);
    let cluster_map = by_issuer(cert_store.clone(), IssuerKind::ClusterIspIssuer);
    // Reported by /metrics while this controller runs.
    let scraped = shared.metrics.certificates.scrape(cert_store.clone());
    let ctx = Arc::new(Context {
        shared: shared.clone(),
        certificates: cert_store.clone(),
        secret_names,
        issuers,
        secrets: secrets_seen,
    });
    Controller::for_stream(cert_events, cert_store)
        .with_config(kube::runtime::controller::Config::default().concurrency(shared.settings.concurrency))
        .watches_stream(secret_events, owner_of_secret)
        .watches(api_in::<IspIssuer>(client, scope), watcher::Config::default(), move |i: IspIssuer| {
            namespaced_map(i.name_any(), i.namespace())
        })
        .watches(
            Api::<ClusterIspIssuer>::all(client.clone()),
            cluster_issuer_watch(&shared.settings),
            move |i: ClusterIspIssuer| cluster_map(i.name_any(), None),
        )
        .graceful_shutdown_on(stopped(shutdown.clone()))
        .run(certificate::reconcile, certificate::error_policy, ctx)
        .for_each(|result| {
            if let Err(e) = result {
                match e {
                    kube::runtime::controller::Error::ObjectNotFound(_) => {}
                    other => warn!(error = %other, "certificate controller"),
                }
            }
            future::ready(())
        })
        .map(move |()| drop(scraped))
        .boxed()
}

/// The certificate a Secret we wrote belongs to, from its label.
fn owner_of_secret(meta: PartialObjectMeta<Secret>) -> Option<ObjectRef<IspCertificate>> {
    let ns = meta.namespace()?;
    let name = meta.labels().get(secrets::LABEL_CERTIFICATE)?;
    Some(ObjectRef::<IspCertificate>::new(name).within(&ns))
}

/// Maps an issuer (kind, name, namespace for `IspIssuer`) to the certificates of the cache that
/// name it.
fn by_issuer(
    store: reflector::Store<IspCertificate>,
    kind: IssuerKind,
) -> impl Fn(String, Option<String>) -> Vec<ObjectRef<IspCertificate>> + Send + Sync + 'static {
    move |name: String, namespace: Option<String>| {
        store
            .state()
            .into_iter()
            .filter(|c| {
                c.spec.issuer_ref.kind == kind
                    && c.spec.issuer_ref.name == name
                    && (namespace.is_none() || c.namespace() == namespace)
            })
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect()
    }
}
