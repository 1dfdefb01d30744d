//! Certificates and keys made fresh at every start, so nothing secret is committed and nothing
//! expires between runs. ECDSA P-256 throughout: fast to generate and accepted by kube-apiserver
//! for serving, client authentication and service-account tokens alike.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use super::TestbedError;
use super::fsutil::write_private;

/// The PEM files the processes and the kubeconfig need, written under `<work>/pki`.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub serving_ca_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub serving_ca: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub client_ca: PathBuf,
    pub sa_public: PathBuf,
    pub sa_private: PathBuf,
}

fn ca_params(common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Makes a serving CA and a serving certificate for `localhost`/`127.0.0.1`, a client CA and an
/// admin client certificate in `system:masters`, and a service-account signing key pair.
pub(crate) fn generate(dir: &Path) -> Result<Pki, TestbedError> {
    std::fs::create_dir_all(dir).map_err(|e| TestbedError::io(format!("creating {}", dir.display()), e))?;

    let serving_ca_key = KeyPair::generate()?;
    let serving_ca_params = ca_params("ispcert-testbed serving CA")?;
    let serving_ca_cert = serving_ca_params.self_signed(&serving_ca_key)?;
    let serving_issuer = Issuer::new(serving_ca_params, &serving_ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    serving.distinguished_name.push(DnType::CommonName, "localhost");
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &serving_issuer)?;

    let client_ca_key = KeyPair::generate()?;
    let client_ca_params = ca_params("ispcert-testbed client CA")?;
    let client_ca_cert = client_ca_params.self_signed(&client_ca_key)?;
    let client_issuer = Issuer::new(client_ca_params, &client_ca_key);

    // The API server maps O to groups; system:masters bypasses RBAC, which is what an admin is.
    let admin_key = KeyPair::generate()?;
    let mut admin = CertificateParams::new(Vec::<String>::new())?;
    admin.distinguished_name.push(DnType::CommonName, "ispcert-testbed-admin");
    admin.distinguished_name.push(DnType::OrganizationName, "system:masters");
    admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &client_issuer)?;

    let sa_key = KeyPair::generate()?;

    let pki = Pki {
        serving_ca_pem: serving_ca_cert.pem(),
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
        serving_ca: dir.join("serving-ca.crt"),
        serving_cert: dir.join("serving.crt"),
        serving_key: dir.join("serving.key"),
        client_ca: dir.join("client-ca.crt"),
        sa_public: dir.join("service-account.pub"),
        sa_private: dir.join("service-account.key"),
    };
    write_private(&pki.serving_ca, &pki.serving_ca_pem)?;
    write_private(&pki.serving_cert, &serving_cert.pem())?;
    write_private(&pki.serving_key, &serving_key.serialize_pem())?;
    write_private(&pki.client_ca, &client_ca_cert.pem())?;
    write_private(&dir.join("admin.crt"), &pki.admin_cert_pem)?;
    write_private(&dir.join("admin.key"), &pki.admin_key_pem)?;
    write_private(&pki.sa_public, &sa_key.public_key_pem())?;
    write_private(&pki.sa_private, &sa_key.serialize_pem())?;
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(pem_text: &str) -> Vec<u8> {
        ::pem::parse(pem_text).expect("PEM").into_contents()
    }

    #[test]
    fn admin_certificate_is_in_system_masters_and_signed_by_the_client_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(dir.path()).unwrap();
        let admin_der = parse(&pki.admin_cert_pem);
        let (_, admin) = X509Certificate::from_der(&admin_der).unwrap();
        let orgs: Vec<&str> = admin.subject().iter_organization().map(|o| o.as_str().unwrap()).collect();
        assert_eq!(orgs, ["system:masters"]);

        let client_ca_der = parse(&std::fs::read_to_string(&pki.client_ca).unwrap());
        let (_, client_ca) = X509Certificate::from_der(&client_ca_der).unwrap();
        admin.verify_signature(Some(client_ca.public_key())).expect("signed by the client CA");
    }

    #[test]
    fn serving_certificate_names_localhost_and_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(dir.path()).unwrap();
        let der = parse(&std::fs::read_to_string(&pki.serving_cert).unwrap());
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().expect("SAN present").value;
        let dns: Vec<&str> = san
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(*name),
                _ => None,
            })
            .collect();
        let ips: Vec<&[u8]> = san
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::IPAddress(ip) => Some(*ip),
                _ => None,
            })
            .collect();
        assert_eq!(dns, ["localhost"]);
        assert_eq!(ips, [&[127u8, 0, 0, 1][..]]);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pki.serving_key).unwrap().permissions());
        assert_eq!(mode & 0o077, 0, "private keys are not readable by others");
    }
}
