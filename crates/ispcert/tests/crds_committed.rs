//! The CRDs committed in `crds/crds.yaml` (what `kubectl apply -f crds/` installs) are exactly the
//! ones the operator generates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[test]
fn committed_crds_match_the_generated_ones() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/crds.yaml");
    let committed =
        std::fs::read_to_string(&path).expect("crds/crds.yaml exists: run `cargo run -- crds > crds/crds.yaml`");
    assert!(
        committed == ispcert::crd::crds_yaml(),
        "crds/crds.yaml differs from the generated CRDs: run `cargo run -- crds > crds/crds.yaml` and commit it"
    );
}
