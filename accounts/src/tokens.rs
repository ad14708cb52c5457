//! Access tokens of the API: JSON Web Tokens issued by the chat platform, whose
//! organization claim names the one organization the bearer may read.
//!
//! The API checks the signature (HS256 with a shared secret, or RS256 / ES256 with the
//! platform's public key), `exp` and `aud` (both required), `iss` when configured, and
//! that the organization claim equals the organization in the path. The algorithm is
//! fixed by configuration, never taken from the token, so `alg: none` or an HS256 token
//! signed with an RS256 public key is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// The algorithms the API accepts, one per deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlgorithm {
    Hs256,
    Rs256,
    Es256,
}

impl TokenAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            TokenAlgorithm::Hs256 => Algorithm::HS256,
            TokenAlgorithm::Rs256 => Algorithm::RS256,
            TokenAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Why a request's token is refused; each has its HTTP status and error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no Authorization: Bearer token")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token has no {0:?} claim naming an organization")]
    NoOrganization(String),
    #[error("the token is for another organization")]
    OtherOrganization,
}

impl Refusal {
    /// 401 when the bearer is not known, 403 when known but not allowed here.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Missing | Refusal::Expired | Refusal::Invalid(_) => 401,
            Refusal::NoOrganization(_) | Refusal::OtherOrganization => 403,
        }
    }

    /// The `error_code` of the JSON answer, and the metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::Expired => "token_expired",
            Refusal::Invalid(_) => "invalid_token",
            Refusal::NoOrganization(_) => "no_organization_claim",
            Refusal::OtherOrganization => "wrong_organization",
        }
    }
}

/// Checks tokens with one key and algorithm.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    org_claim: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("audience", &self.validation.aud)
            .field("org_claim", &self.org_claim)
            .finish_non_exhaustive()
    }
}

/// Where a verifier's key comes from.
#[derive(Debug, Clone)]
pub enum VerifierKey<'a> {
    /// The HS256 shared secret.
    Secret(&'a [u8]),
    /// The PEM of an RSA or EC public key (RS256, ES256).
    PublicPem(&'a [u8]),
}

/// What a verifier checks besides the signature.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub audience: &'a str,
    pub issuer: Option<&'a str>,
    pub org_claim: &'a str,
    /// Clock skew allowed on `exp`.
    pub leeway: Duration,
}

impl Verifier {
    pub fn new(algorithm: TokenAlgorithm, key: VerifierKey<'_>, expect: &Expectations<'_>) -> anyhow::Result<Self> {
        let key = match (algorithm, key) {
            (TokenAlgorithm::Hs256, VerifierKey::Secret(secret)) => {
                anyhow::ensure!(
                    secret.len() >= 32,
                    "the HS256 secret has {} bytes; at least 32 are needed",
                    secret.len()
                );
                DecodingKey::from_secret(secret)
            }
            (TokenAlgorithm::Rs256, VerifierKey::PublicPem(pem)) => {
                DecodingKey::from_rsa_pem(pem).map_err(|e| anyhow::anyhow!("not an RSA public key in PEM: {e}"))?
            }
            (TokenAlgorithm::Es256, VerifierKey::PublicPem(pem)) => {
                DecodingKey::from_ec_pem(pem).map_err(|e| anyhow::anyhow!("not an EC public key in PEM: {e}"))?
            }
            (TokenAlgorithm::Hs256, VerifierKey::PublicPem(_)) => {
                anyhow::bail!("HS256 needs a shared secret, not a public key")
            }
            (_, VerifierKey::Secret(_)) => anyhow::bail!("RS256 and ES256 need a public key file, not a secret"),
        };
        anyhow::ensure!(!expect.audience.is_empty(), "the token audience must not be empty");
        anyhow::ensure!(!expect.org_claim.is_empty(), "the organization claim must be named");
        let mut validation = Validation::new(algorithm.jwt());
        validation.set_audience(&[expect.audience]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        if let Some(issuer) = expect.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation.leeway = expect.leeway.as_secs();
        Ok(Verifier {
            key,
            validation,
            org_claim: expect.org_claim.to_string(),
        })
    }

    /// The organization the `Authorization` header's token allows, if it is valid.
    pub fn organization(&self, authorization: Option<&str>) -> Result<String, Refusal> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Missing)?;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => Refusal::Expired,
                    ErrorKind::InvalidSignature => Refusal::Invalid("bad signature".into()),
                    ErrorKind::InvalidAlgorithm => Refusal::Invalid("algorithm not accepted".into()),
                    ErrorKind::InvalidAudience => Refusal::Invalid("wrong audience".into()),
                    ErrorKind::InvalidIssuer => Refusal::Invalid("wrong issuer".into()),
                    ErrorKind::MissingRequiredClaim(claim) => Refusal::Invalid(format!("no {claim:?} claim")),
                    _ => Refusal::Invalid("malformed token".into()),
                }
            })?;
        match data.claims.get(&self.org_claim) {
            Some(Value::String(org)) if !org.is_empty() => Ok(org.clone()),
            _ => Err(Refusal::NoOrganization(self.org_claim.clone())),
        }
    }

    /// Checks that the token allows `organization`.
    pub fn allows(&self, authorization: Option<&str>, organization: &str) -> Result<(), Refusal> {
        if self.organization(authorization)? == organization {
            Ok(())
        } else {
            Err(Refusal::OtherOrganization)
        }
    }
}

/// A development token (HS256) for `organization`: what the chat platform would issue
/// to an agent of that organization, valid for `ttl`.
pub fn mint_hs256(
    secret: &[u8],
    audience: &str,
    org_claim: &str,
    organization: &str,
    subject: &str,
    ttl: Duration,
) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::from(subject));
    claims.insert("aud".into(), Value::from(audience));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + ttl.as_secs()));
    claims.insert(org_claim.into(), Value::from(organization));
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a shared secret of at least 32 bytes!";

    fn verifier() -> Verifier {
        let expect = Expectations {
            audience: "sales-api",
            issuer: None,
            org_claim: "organization_id",
            leeway: Duration::ZERO,
        };
        Verifier::new(TokenAlgorithm::Hs256, VerifierKey::Secret(SECRET), &expect).unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn mint(org: &str, ttl: Duration) -> String {
        mint_hs256(SECRET, "sales-api", "organization_id", org, "agent-1", ttl).unwrap()
    }

    #[test]
    fn a_token_allows_its_own_organization_only() {
        let token = bearer(&mint("org_a", Duration::from_secs(60)));
        assert_eq!(verifier().allows(Some(&token), "org_a"), Ok(()));
        assert_eq!(
            verifier().allows(Some(&token), "org_b"),
            Err(Refusal::OtherOrganization)
        );
        assert_eq!(Refusal::OtherOrganization.status(), 403);
    }

    #[test]
    fn missing_expired_and_resigned_tokens_are_refused() {
        assert_eq!(verifier().organization(None), Err(Refusal::Missing));
        assert_eq!(verifier().organization(Some("Basic abc")), Err(Refusal::Missing));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut claims = Map::new();
        claims.insert("aud".into(), "sales-api".into());
        claims.insert("exp".into(), (now - 120).into());
        claims.insert("organization_id".into(), "org_a".into());
        let expired = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(verifier().organization(Some(&bearer(&expired))), Err(Refusal::Expired));
        let other_key = mint_hs256(
            b"another secret of at least 32 bytes!!",
            "sales-api",
            "organization_id",
            "org_a",
            "x",
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(matches!(
            verifier().organization(Some(&bearer(&other_key))),
            Err(Refusal::Invalid(_))
        ));
    }

    /// `{"alg":"none","typ":"JWT"}`, base64url.
    const ALG_NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

    #[test]
    fn alg_none_and_a_foreign_audience_are_refused() {
        let minted = mint("org_a", Duration::from_secs(60));
        let claims = minted.split('.').nth(1).unwrap();
        let unsigned = format!("{ALG_NONE_HEADER}.{claims}.");
        assert!(matches!(
            verifier().organization(Some(&bearer(&unsigned))),
            Err(Refusal::Invalid(_))
        ));
        let foreign = mint_hs256(
            SECRET,
            "another-api",
            "organization_id",
            "org_a",
            "x",
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            verifier().organization(Some(&bearer(&foreign))),
            Err(Refusal::Invalid("wrong audience".into()))
        );
    }

    #[test]
    fn a_token_without_the_organization_claim_is_forbidden() {
        let token = mint_hs256(SECRET, "sales-api", "org", "org_a", "x", Duration::from_secs(60)).unwrap();
        let refusal = verifier().organization(Some(&bearer(&token))).unwrap_err();
        assert_eq!((refusal.status(), refusal.code()), (403, "no_organization_claim"));
    }

    #[test]
    fn a_short_secret_or_a_mismatched_key_is_a_configuration_error() {
        let expect = Expectations {
            audience: "sales-api",
            issuer: None,
            org_claim: "organization_id",
            leeway: Duration::ZERO,
        };
        assert!(Verifier::new(TokenAlgorithm::Hs256, VerifierKey::Secret(b"short"), &expect).is_err());
        assert!(Verifier::new(TokenAlgorithm::Rs256, VerifierKey::Secret(SECRET), &expect).is_err());
        assert!(Verifier::new(TokenAlgorithm::Es256, VerifierKey::PublicPem(b"not a pem"), &expect).is_err());
    }
}
