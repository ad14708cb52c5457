//! `salesctl sign`: prints the signature of a customer id, as a store's back end makes it
//! for the widget's `customer_signature` (HMAC-SHA256 of `organization_id:customer_id`
//! under a key of ingest's identity keys file, in hexadecimal). For trying signed
//! identities out, and for tests.

use std::io::Write;
use std::path::PathBuf;

use accounts::identity::KeySet;
use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The organization id.
    #[arg(long, env = "SALESCTL_SIGN_ORG")]
    pub org: String,

    /// The customer id, exactly as the widget sends it.
    #[arg(long, env = "SALESCTL_SIGN_CUSTOMER")]
    pub customer: String,

    /// The identity keys file (KEY_ID=SECRET lines), as ingest reads it.
    #[arg(long, env = "SALESCTL_SIGN_KEYS_FILE")]
    pub keys_file: PathBuf,

    /// The id of the key to sign with.
    #[arg(long, env = "SALESCTL_SIGN_KEY_ID")]
    pub key_id: String,
}

/// The signature `args` ask for.
pub fn signature(args: &SignArgs) -> anyhow::Result<String> {
    schemas::validation::organization_id("--org", &args.org).map_err(|e| anyhow::anyhow!("{e}"))?;
    schemas::validation::customer_id("--customer", &args.customer).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = args.keys_file.display();
    let text = std::fs::read_to_string(&args.keys_file).with_context(|| format!("cannot read --keys-file {path}"))?;
    let keys = KeySet::parse(&text).with_context(|| format!("--keys-file {path} is malformed"))?;
    keys.sign(&args.key_id, &args.org, &args.customer).ok_or_else(|| {
        anyhow::anyhow!(
            "--key-id {:?} is not in {path} (its keys: {})",
            args.key_id,
            keys.ids().join(", ")
        )
    })
}

/// Prints the signature, alone on its line.
pub fn run(args: &SignArgs, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "{}", signature(args)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SignArgs,
    }

    struct KeysFile(PathBuf);

    impl KeysFile {
        fn new(text: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("salesctl-sign-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = dir.join(format!("keys-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
            std::fs::write(&path, text).unwrap();
            KeysFile(path)
        }
    }

    impl Drop for KeysFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn sign(file: &KeysFile, args: &[&str]) -> anyhow::Result<String> {
        let path = file.0.to_str().unwrap();
        let cli = Cli::try_parse_from([&["x", "--keys-file", path], args].concat())?;
        let mut out = Vec::new();
        run(&cli.args, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn prints_the_hmac_of_org_colon_customer_under_the_named_key() {
        let file = KeysFile::new("# keys\nk1=0123456789abcdef-secret-of-key-a\nk2=another-secret-of-16-bytes\n");
        let printed = sign(
            &file,
            &["--org", "org_8d2f", "--customer", "c-5e1b2a", "--key-id", "k1"],
        )
        .unwrap();
        // printf 'org_8d2f:c-5e1b2a' | openssl dgst -sha256 -hmac '0123456789abcdef-secret-of-key-a'
        assert_eq!(
            printed,
            "46f6d6fd8355fa7baa3feb7c6aa08cb46e6c7484808256221845aec3806ac101\n"
        );
        let other = sign(
            &file,
            &["--org", "org_8d2f", "--customer", "c-5e1b2a", "--key-id", "k2"],
        )
        .unwrap();
        assert_ne!(other, printed);
    }

    #[test]
    fn an_unknown_key_or_a_bad_file_or_id_is_refused_with_the_reason() {
        let file = KeysFile::new("k1=0123456789abcdef-secret-of-key-a\n");
        let err = sign(&file, &["--org", "org_8d2f", "--customer", "c-1", "--key-id", "k9"]).unwrap_err();
        assert!(err.to_string().contains("not in"), "{err}");
        assert!(err.to_string().contains("k1"), "{err}");
        assert!(sign(&file, &["--org", "org 8d2f", "--customer", "c-1", "--key-id", "k1"]).is_err());
        assert!(sign(&file, &["--org", "org_8d2f", "--customer", "", "--key-id", "k1"]).is_err());

        let bad = KeysFile::new("k1 0123456789abcdef-secret-of-key-a\n");
        let err = sign(&bad, &["--org", "org_8d2f", "--customer", "c-1", "--key-id", "k1"]).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("line 1"), "{text}");
        assert!(!text.contains("secret-of-key-a"), "{text}");
    }
}
