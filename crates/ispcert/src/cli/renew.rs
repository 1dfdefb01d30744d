//! `ispcert renew`: a free reissue now, for certificates by name, by label selector or all of a
//! namespace, asked for through the annotation the controller watches (a status write would not
//! wake it). Each run writes the current time: the controller acts on each value once, so running
//! it again while a reissue is under way requests nothing more.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::controller::certificate::RENEW_ANNOTATION;
use crate::crd::IspCertificate;

#[derive(Args, Debug)]
pub struct RenewArgs {
    /// Certificates to renew, by name.
    pub names: Vec<String>,
    /// Renew the certificates matching this label selector.
    #[arg(short = 'l', long, conflicts_with = "names")]
    pub selector: Option<String>,
    /// Renew every certificate of the namespace (with -A, of every namespace).
    #[arg(long, conflicts_with_all = ["names", "selector"])]
    pub all: bool,
    /// The namespace; defaults to the kubeconfig context's.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace (with -l or --all).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// A kubeconfig file; without it the in-cluster config, then ~/.kube/config, are used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

pub async fn run(args: RenewArgs) -> ExitCode {
    match renew(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ispcert renew: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn renew(args: &RenewArgs) -> Result<(), String> {
    if args.names.is_empty() && args.selector.is_none() && !args.all {
        return Err("name the certificates, or select them with -l SELECTOR or --all".into());
    }
    if args.all_namespaces && !args.names.is_empty() {
        return Err("-A goes with -l or --all; names are looked up in one namespace (-n)".into());
    }
    let client = super::operator::kube_client(args.kubeconfig.as_deref()).await?;
    let namespace = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<IspCertificate> =
        if args.all_namespaces { Api::all(client.clone()) } else { Api::namespaced(client.clone(), &namespace) };
    let targets: Vec<(String, String)> = if args.names.is_empty() {
        let params = args.selector.as_deref().map_or_else(ListParams::default, |s| ListParams::default().labels(s));
        let list = api.list_metadata(&params).await.map_err(|e| format!("list IspCertificates: {e}"))?;
        list.items.iter().map(|c| (c.namespace().unwrap_or_default(), c.name_any())).collect()
    } else {
        args.names.iter().map(|n| (namespace.clone(), n.clone())).collect()
    };
    if targets.is_empty() {
        return Err("no IspCertificate matched".into());
    }
    let now = jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {RENEW_ANNOTATION: now}}});
    let mut failed = 0;
    for (ns, name) in &targets {
        let api: Api<IspCertificate> = Api::namespaced(client.clone(), ns);
        match api.patch_metadata(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => println!("renewal requested: IspCertificate {ns}/{name}"),
            Err(e) => {
                failed += 1;
                eprintln!("IspCertificate {ns}/{name}: {e}");
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} of {} certificates could not be annotated", targets.len())),
    }
}
