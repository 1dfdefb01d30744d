//! What people type: `kubectl get` with our columns and short names, and the `ispcert` commands
//! that check a billing account, against the simulator.

use std::path::PathBuf;
use std::process::Command;

use ispcert_sim::{AccountSpec, Money};

use crate::support::*;

async fn kubectl_paths() -> (PathBuf, PathBuf) {
    let bin = ispcert_tests::k8s_bin_dir().await.expect("the Kubernetes binaries");
    let kubeconfig = ispcert_tests::control_plane().await.expect("control plane").kubeconfig_path().to_path_buf();
    (bin.join("kubectl"), kubeconfig)
}

fn kubectl((bin, kubeconfig): &(PathBuf, PathBuf), args: &[&str]) -> String {
    let out = Command::new(bin).arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn kubectl_get_shows_the_columns_users_expect() {
    let env = Env::new("cli-kubectl").await;
    env.ready_issuer().await;
    env.apply_certificate("www", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    let cert = env.wait_ready("www").await;
    let ns = env.ns.clone();
    let k = kubectl_paths().await;
    let (plain, wide, issuers) = tokio::task::spawn_blocking(move || {
        (
            kubectl(&k, &["get", "ispcert", "-n", &ns]),
            kubectl(&k, &["get", "ispcerts", "-n", &ns, "-o", "wide"]),
            kubectl(&k, &["get", "ispissuer", "-n", &ns]),
        )
    })
    .await
    .unwrap();
    let header: Vec<&str> = plain.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "SECRET", "PRODUCT", "EXPIRES", "AGE"]);
    let row: Vec<&str> = plain.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["www", "True", "www-tls", "alphassl"]);
    assert!(row[4].starts_with("20"), "EXPIRES is a date: {plain}");
    let wide_header = wide.lines().next().unwrap();
    assert!(wide_header.contains("STATUS") && wide_header.contains("ORDER"), "{wide}");
    assert!(wide.contains(cert.status.unwrap().order_id.unwrap().as_str()), "{wide}");
    assert!(issuers.lines().nth(1).unwrap().contains("True"), "{issuers}");
}

const FOREIGN: &str = "abroad@example.com";

#[tokio::test]
async fn account_commands_against_the_simulator() {
    let mut sim = Env::default_sim();
    sim.accounts.push(AccountSpec::new(FOREIGN, PASSWORD, Money::from_units(100), "USD"));
    let env = Env::with_sim("cli-account", sim).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let url = env.sim.base_url();
    let run = move |args: Vec<String>| {
        let out = Command::new(operator_binary()).args(&args).output().expect("ispcert runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let login = move |email: &str, file: &std::path::Path| {
        vec![
            "--url".to_string(),
            url.clone(),
            "--email".into(),
            email.into(),
            "--password-file".into(),
            file.display().to_string(),
        ]
    };
    let account = {
        let login = login.clone();
        move |file: &std::path::Path| login(EMAIL, file)
    };
    let (password, wrong) = (password.clone(), wrong.clone());
    let results = tokio::task::spawn_blocking(move || {
        let countries = run([vec!["countries".to_string()], account(&password)].concat());
        let check = run([vec!["account".to_string(), "check".into()], account(&password)].concat());
        let refused = run([vec!["account".to_string(), "check".into()], account(&wrong)].concat());
        let catalog = run(vec!["catalog".into()]);
        let foreign =
            run([vec!["countries".to_string(), "--region".into(), "foreign".into()], login(FOREIGN, &password)]
                .concat());
        let foreign_found = run([vec!["countries".to_string()], login(FOREIGN, &password)].concat());
        let russian = vec!["countries".to_string(), "--region".into(), "russian".into()];
        let foreign_as_russian = run([russian, login(FOREIGN, &password)].concat());
        (countries, check, refused, catalog, foreign, (foreign_found, foreign_as_russian))
    })
    .await
    .unwrap();
    let (countries, check, refused, catalog, foreign, (foreign_found, foreign_as_russian)) = results;
    // A USD account buys from the foreign price list: found by itself, and said; asked with the
    // Russian one it is refused with the flag to use.
    assert!(foreign.0 && foreign.1.contains("182"), "{foreign:?}");
    assert!(foreign_found.0 && foreign_found.1.contains("182"), "{foreign_found:?}");
    assert!(foreign_found.2.contains("Foreign price list"), "{foreign_found:?}");
    assert!(!foreign_as_russian.0 && foreign_as_russian.2.contains("try --region foreign"), "{foreign_as_russian:?}");
    assert!(countries.2.contains("Russian price list"), "the region found is said: {countries:?}");
    assert!(countries.0 && countries.1.contains("182") && countries.1.contains("Russia"), "{countries:?}");
    assert!(check.0 && check.1.contains("can use the API"), "{check:?}");
    assert!(!refused.0 && refused.2.contains("wrong email or password"), "{refused:?}");
    assert!(!refused.2.contains("nope") && !check.1.contains(PASSWORD));
    assert!(catalog.0 && catalog.1.lines().count() == 28, "{catalog:?}");
}
