//! Certificate chains generated at test time (rcgen), with any validity windows.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

/// The key type of generated certificates.
pub use rcgen::KeyPair as CertKey;

/// A validity window in Unix seconds.
pub type Window = (i64, i64);

/// A generated chain: leaf, optional intermediate, root; DER and PEM.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The server certificate.
    pub leaf_der: Vec<u8>,
    /// The intermediates the server sends (zero or one).
    pub intermediates_der: Vec<Vec<u8>>,
    /// The root CA certificate.
    pub root_der: Vec<u8>,
    /// Leaf then intermediates, PEM (what a server sends).
    pub chain_pem: String,
    /// The leaf alone, PEM.
    pub leaf_pem: String,
    /// The intermediates alone, PEM (empty when none).
    pub inter_pem: String,
    /// The leaf's private key, PEM.
    pub key_pem: String,
    /// The root, PEM (what a client trusts).
    pub root_pem: String,
    /// A client certificate signed by the root (valid a year either side of now), PEM.
    pub client_pem: String,
    /// Its key, PEM.
    pub client_key_pem: String,
}

fn dt(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).expect("valid timestamp")
}

fn ca_params(cn: &str, w: Window) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = dt(w.0);
    p.not_after = dt(w.1);
    p
}

/// Makes a chain for `name`: root (window `root`), an intermediate if `inter` is given, and a
/// leaf valid for `name` in `leaf`.
pub fn make_chain(name: &str, root: Window, inter: Option<Window>, leaf: Window) -> Chain {
    let root_ca = CertifiedIssuer::self_signed(
        ca_params("trusttime test root", root),
        KeyPair::generate().expect("key"),
    )
    .expect("root");
    let inter_ca = inter.map(|w| {
        CertifiedIssuer::signed_by(
            ca_params("trusttime test intermediate", w),
            KeyPair::generate().expect("key"),
            &root_ca,
        )
        .expect("intermediate")
    });
    let mut lp = CertificateParams::new(vec![name.to_owned()]).expect("params");
    lp.distinguished_name.push(DnType::CommonName, name);
    lp.not_before = dt(leaf.0);
    lp.not_after = dt(leaf.1);
    let leaf_key = KeyPair::generate().expect("key");
    let leaf_cert = match &inter_ca {
        Some(i) => lp.signed_by(&leaf_key, i).expect("leaf"),
        None => lp.signed_by(&leaf_key, &root_ca).expect("leaf"),
    };
    let leaf_pem = leaf_cert.pem();
    let mut inter_pem = String::new();
    let mut intermediates_der = Vec::new();
    if let Some(i) = &inter_ca {
        inter_pem.push_str(&i.pem());
        intermediates_der.push(i.der().to_vec());
    }
    let chain_pem = format!("{leaf_pem}{inter_pem}");
    let mut cp = CertificateParams::new(vec!["device-42".to_owned()]).expect("params");
    cp.distinguished_name.push(DnType::CommonName, "device-42");
    let now = unix_now();
    cp.not_before = dt(now - 365 * 86_400);
    cp.not_after = dt(now + 365 * 86_400);
    let client_key = KeyPair::generate().expect("key");
    let client = cp.signed_by(&client_key, &root_ca).expect("client cert");
    Chain {
        leaf_der: leaf_cert.der().to_vec(),
        intermediates_der,
        root_der: root_ca.der().to_vec(),
        chain_pem,
        leaf_pem,
        inter_pem,
        key_pem: leaf_key.serialize_pem(),
        root_pem: root_ca.pem(),
        client_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// A chain whose leaf claims to be issued by the root of `genuine` (same name) but is signed
/// by another key: its dates cannot be believed.
pub fn forged_leaf(genuine: &Chain, name: &str, leaf: Window) -> Chain {
    let impostor = make_chain(name, (leaf.0 - 86_400, leaf.1 + 86_400), None, leaf);
    Chain {
        root_der: genuine.root_der.clone(),
        root_pem: genuine.root_pem.clone(),
        ..impostor
    }
}

/// Writes PEM files for a TLS server into `dir`: `chain.pem`, `leaf.pem`, `inter.pem`,
/// `key.pem`, `root.pem`.
pub fn write_pem(chain: &Chain, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::write(dir.join("chain.pem"), &chain.chain_pem)?;
    std::fs::write(dir.join("leaf.pem"), &chain.leaf_pem)?;
    std::fs::write(dir.join("inter.pem"), &chain.inter_pem)?;
    std::fs::write(dir.join("key.pem"), &chain.key_pem)?;
    std::fs::write(dir.join("client.pem"), &chain.client_pem)?;
    std::fs::write(dir.join("client-key.pem"), &chain.client_key_pem)?;
    std::fs::write(dir.join("root.pem"), &chain.root_pem)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// An everyday chain valid now: root (400 days old, 10 years left), intermediate, and a leaf
/// for `name` issued 30 days ago with 335 days left.
pub fn valid_chain(name: &str) -> Chain {
    let now = unix_now();
    let day = 86_400;
    make_chain(
        name,
        (now - 400 * day, now + 3650 * day),
        Some((now - 300 * day, now + 1000 * day)),
        (now - 30 * day, now + 335 * day),
    )
}

/// A CA identity: a name and a key. Certificates for it (self-signed roots, cross-signs,
/// re-issued copies with other dates) are made with [`ca_cert`].
#[derive(Debug)]
pub struct Identity {
    /// The common name (the subject is `CN=<name>`).
    pub name: String,
    /// Its key.
    pub key: KeyPair,
}

impl Identity {
    /// A new identity with an ECDSA P-256 key.
    pub fn ecdsa(name: &str) -> Identity {
        Identity {
            name: name.to_owned(),
            key: KeyPair::generate().expect("key"),
        }
    }
    /// A new identity with this key (e.g. RSA from [`rsa_key`]).
    pub fn with_key(name: &str, key: KeyPair) -> Identity {
        Identity {
            name: name.to_owned(),
            key,
        }
    }
}

/// An RSA-2048 key made by `openssl genpkey` (ring cannot generate RSA keys), or `None`
/// when openssl is missing.
pub fn rsa_key() -> Option<KeyPair> {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .ok()?;
    let pem = String::from_utf8(out.stdout).ok()?;
    KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).ok()
}

/// A copy of an identity's key (to sign with it in several places).
pub fn same_key(k: &KeyPair) -> KeyPair {
    KeyPair::from_pem_and_sign_algo(&k.serialize_pem(), k.algorithm()).expect("key")
}

fn issuer_of(id: &Identity) -> rcgen::Issuer<'static, &KeyPair> {
    rcgen::Issuer::new(ca_params(&id.name, (0, 1)), &id.key)
}

/// A CA certificate for `subject` issued (signed) by `issuer` (self-signed when both are the
/// same identity), valid in `w`; with an authority key identifier so that path builders can
/// tell same-named issuers apart.
pub fn ca_cert(subject: &Identity, issuer: &Identity, w: Window) -> Vec<u8> {
    let mut p = ca_params(&subject.name, w);
    p.use_authority_key_identifier_extension = true;
    let cert = if std::ptr::eq(subject, issuer) {
        p.self_signed(&subject.key).expect("self-signed")
    } else {
        p.signed_by(&subject.key, &issuer_of(issuer))
            .expect("signed")
    };
    cert.der().to_vec()
}

/// A server certificate for `dns` with key `key`, issued by `issuer`, valid in `w`.
pub fn leaf_cert(dns: &str, key: &KeyPair, issuer: &Identity, w: Window) -> Vec<u8> {
    let mut p = CertificateParams::new(vec![dns.to_owned()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, dns);
    p.not_before = dt(w.0);
    p.not_after = dt(w.1);
    p.use_authority_key_identifier_extension = true;
    p.signed_by(key, &issuer_of(issuer))
        .expect("leaf")
        .der()
        .to_vec()
}

/// PEM of DER certificates, concatenated.
pub fn pem_of(ders: &[Vec<u8>]) -> String {
    ders.iter().map(|d| pem_block(d)).collect()
}

fn pem_block(der: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b64.push(char::from(T[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Writes the files of a served chain built piece by piece, as [`write_pem`] does: `leaf.pem`,
/// `key.pem`, `inter.pem` (everything the server sends after its certificate, in that order:
/// `openssl s_server -cert_chain`), `chain.pem` (leaf then those), `root.pem` (the trusted
/// roots, in that order) and a client certificate `client.pem`/`client-key.pem` issued by
/// `client_issuer` (valid a year either side of now).
pub fn write_served(
    dir: &std::path::Path,
    leaf: &[u8],
    key: &KeyPair,
    sent: &[Vec<u8>],
    roots: &[Vec<u8>],
    client_issuer: &Identity,
) -> std::io::Result<()> {
    let leaf_pem = pem_of(&[leaf.to_vec()]);
    let inter_pem = pem_of(sent);
    std::fs::write(dir.join("leaf.pem"), &leaf_pem)?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    std::fs::write(dir.join("inter.pem"), &inter_pem)?;
    std::fs::write(dir.join("chain.pem"), format!("{leaf_pem}{inter_pem}"))?;
    std::fs::write(dir.join("root.pem"), pem_of(roots))?;
    let now = unix_now();
    let client_key = KeyPair::generate().expect("key");
    let client = leaf_cert(
        "device-42",
        &client_key,
        client_issuer,
        (now - 365 * 86_400, now + 365 * 86_400),
    );
    std::fs::write(dir.join("client.pem"), pem_of(&[client]))?;
    std::fs::write(dir.join("client-key.pem"), client_key.serialize_pem())
}
