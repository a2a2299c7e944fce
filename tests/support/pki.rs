//! The certificates a TLS test registry needs, made fresh per registry: a CA, a server
//! certificate for `127.0.0.1` (IP SAN) and `localhost` signed by it, and a token-signing
//! certificate signed by it (the token issuer puts it in each JWT's `x5c`; the registry trusts
//! the CA through `auth.token.rootcertbundle`). All keys are ECDSA P-256.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

/// The PEM and DER material of one test PKI.
pub struct TestPki {
    /// The CA certificate, PEM: what clients trust (`--cacert`, `--registry-ca-cert-path`).
    pub ca_pem: String,
    /// The registry's server certificate, PEM.
    pub server_cert_pem: String,
    /// The registry's server key, PKCS#8 PEM.
    pub server_key_pem: String,
    /// The token-signing certificate, DER (goes base64 into the JWT header's `x5c`).
    pub token_cert_der: Vec<u8>,
    /// The token-signing key, PKCS#8 DER (loaded by ring to sign ES256).
    pub token_key_pkcs8: Vec<u8>,
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "ferry tests");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl TestPki {
    /// Generates a new CA and the two certificates it signs.
    pub fn generate() -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.distinguished_name = name("ferry test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA cert");

        // Go and rustls both check the IP SAN for https://127.0.0.1:PORT; webpki also wants the
        // serverAuth EKU on a server certificate.
        let server_key = KeyPair::generate().expect("server key");
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("server params");
        server_params.distinguished_name = name("127.0.0.1");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.use_authority_key_identifier_extension = true;
        let server_cert = server_params.signed_by(&server_key, &ca).expect("server cert");

        // Generated with ring so the same PKCS#8 bytes can sign JWTs in the fixed (r||s) form
        // that libtrust's ES256 verification expects.
        let token_key_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("token key")
            .as_ref()
            .to_vec();
        let token_key = KeyPair::try_from(token_key_pkcs8.as_slice()).expect("token key for rcgen");
        let mut token_params = CertificateParams::new(Vec::new()).expect("token params");
        token_params.distinguished_name = name("ferry test token issuer");
        token_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        token_params.use_authority_key_identifier_extension = true;
        let token_cert = token_params.signed_by(&token_key, &ca).expect("token cert");

        TestPki {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            token_cert_der: token_cert.der().to_vec(),
            token_key_pkcs8,
        }
    }
}
