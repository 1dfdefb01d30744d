//! The ispcert API, group `ispcert.dev`, version `v1alpha1`, and its generated CRDs.

mod certificate;
mod issuer;

pub use certificate::*;
pub use issuer::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, ValidationRule};
use kube::CustomResourceExt;

use crate::catalog::{MultiDomain, PRODUCTS, Product};

/// The API group.
pub const GROUP: &str = "ispcert.dev";

fn quoted(values: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = values.into_iter().map(|v| format!("'{v}'")).collect();
    format!("[{}]", items.join(", "))
}

/// Every way to name the products matching `keep`: stable names and both price-list ids.
fn product_names(keep: impl Fn(&Product) -> bool) -> String {
    let mut out: Vec<String> = Vec::new();
    for p in PRODUCTS.iter().filter(|p| keep(p)) {
        out.push(p.name.to_string());
        for id in [p.pricelist_russian, p.pricelist_foreign] {
            if !out.contains(&id.to_string()) {
                out.push(id.to_string());
            }
        }
    }
    quoted(out)
}

fn rule(rule: String, message: String, field_path: &str) -> ValidationRule {
    ValidationRule { rule, message: Some(message), field_path: Some(field_path.to_string()), ..Default::default() }
}

/// CEL rules drawn from the catalog, so that an unknown product, a wildcard name on a
/// non-wildcard product, or alt names on a single-domain product are refused at apply time.
fn catalog_rules() -> Vec<ValidationRule> {
    let all = product_names(|_| true);
    let wildcard = product_names(|p| p.wildcard);
    let multi = product_names(|p| p.multi_domain != MultiDomain::No);
    let included: Vec<(String, u32)> = PRODUCTS
        .iter()
        .filter_map(|p| match p.multi_domain {
            MultiDomain::Included { domains } => Some((product_names(|q| q.name == p.name), domains)),
            _ => None,
        })
        .collect();
    let mut rules = vec![
        rule(
            format!("self.product in {all}"),
            "unknown product: use a catalog name such as alphassl, alphassl-wildcard or globalsign-domainssl, or one of their price-list ids (`ispcert catalog` lists them)".into(),
            ".product",
        ),
        rule(
            format!("!self.commonName.startsWith('*.') || self.product in {wildcard}"),
            "a wildcard commonName (*.) needs a wildcard product such as alphassl-wildcard".into(),
            ".commonName",
        ),
        rule(
            format!("self.commonName.startsWith('*.') || !(self.product in {wildcard})"),
            "a wildcard product needs a wildcard commonName such as *.example.com".into(),
            ".commonName",
        ),
        rule(
            format!("!has(self.altNames) || size(self.altNames) == 0 || has(self.multiDomain) || self.product in {multi}"),
            "altNames need a multi-domain product such as globalsign-domainssl or comodo-positivessl-multidomain (or multiDomain.addonCode for a product whose addon the catalog lacks)".into(),
            ".altNames",
        ),
        rule(
            "!has(self.altNames) || self.altNames.all(n, !n.startsWith('*.'))".into(),
            "altNames cannot be wildcards: no multi-domain product of the catalog is a wildcard product".into(),
            ".altNames",
        ),
    ];
    for (names, domains) in included {
        rules.push(rule(
            format!("!(self.product in {names}) || !has(self.altNames) || size(self.altNames) <= {} || has(self.multiDomain)", domains - 1),
            format!("this product includes {domains} domains in all (the commonName and {} altNames); more need multiDomain.addonCode from your account's order form", domains - 1),
            ".altNames",
        ));
    }
    rules
}

/// The three CRDs, with the catalog's rules added to `IspCertificate`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut certificate = IspCertificate::crd();
    for version in &mut certificate.spec.versions {
        let spec = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"));
        if let Some(spec) = spec {
            spec.x_kubernetes_validations.get_or_insert_with(Vec::new).extend(catalog_rules());
        }
    }
    vec![IspIssuer::crd(), ClusterIspIssuer::crd(), certificate]
}

/// The CRDs as one multi-document YAML, as committed in `crds/crds.yaml`.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        // Serialising a derived CRD cannot fail: every field is plain data.
        out.push_str(&serde_yaml::to_string(&crd).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of every CRD, by path, with its schema.
    fn fields() -> Vec<(String, serde_json::Value)> {
        fn walk(path: &str, schema: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
            if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
                for (name, sub) in props {
                    let p = format!("{path}.{name}");
                    out.push((p.clone(), sub.clone()));
                    walk(&p, sub, out);
                }
            }
            if let Some(items) = schema.get("items") {
                walk(&format!("{path}[]"), items, out);
            }
        }
        let mut out = Vec::new();
        for crd in crds() {
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            walk(&crd.spec.names.kind, &schema["openAPIV3Schema"], &mut out);
        }
        out
    }

    #[test]
    fn every_spec_field_is_documented() {
        let top = |p: &str| ["metadata", "apiVersion", "kind"].iter().any(|t| p.ends_with(&format!(".{t}")));
        let missing: Vec<String> = fields()
            .into_iter()
            .filter(|(p, s)| !top(p) && s.get("description").and_then(|d| d.as_str()).is_none_or(str::is_empty))
            .map(|(p, _)| p)
            .collect();
        // Condition's own fields come documented from k8s-openapi.
        assert!(missing.is_empty(), "fields without a doc comment (they become `kubectl explain`): {missing:#?}");
    }

    #[test]
    fn every_field_is_spelled_in_camel_case() {
        let wrong: Vec<String> = fields().into_iter().map(|(p, _)| p).filter(|p| p.contains('_')).collect();
        assert!(wrong.is_empty(), "Kubernetes fields are camelCase: {wrong:#?}");
    }
}
