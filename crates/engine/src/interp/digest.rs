//! HTTP Digest authentication (RFC 7616): the answer to a server's `WWW-Authenticate:
//! Digest` challenge, with MD5 or SHA-256 (and their `-sess` forms) and `qop=auth`.
//! A call with a digest policy is sent once without credentials; on a 401 that carries
//! a challenge, it is sent again with the answer.

use md5::Digest as _;

/// What a server's challenge asks for.
#[derive(Debug, PartialEq)]
pub(crate) struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: String,
    /// Whether the server offers `qop=auth`; without `qop`, the RFC 2069 answer.
    qop_auth: bool,
}

impl Challenge {
    /// The digest challenge among a response's `WWW-Authenticate` headers, if any.
    pub(crate) fn find<'h>(values: impl IntoIterator<Item = &'h str>) -> Option<Challenge> {
        values.into_iter().find_map(Challenge::parse)
    }

    fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let params = parameters(rest);
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(qop) => qop
                .split(',')
                .any(|q| q.trim().eq_ignore_ascii_case("auth")),
        };
        Some(Challenge {
            realm: get("realm").unwrap_or_default(),
            nonce: get("nonce")?,
            opaque: get("opaque"),
            algorithm: get("algorithm").unwrap_or_else(|| "MD5".into()),
            qop_auth,
        })
    }

    /// The `Authorization` header answering this challenge for a request of `method`
    /// to `uri` (its path and query), with client nonce `cnonce`; `None` for an
    /// algorithm skein does not speak.
    pub(crate) fn answer(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<String> {
        let (hash, session): (fn(&str) -> String, bool) =
            match self.algorithm.to_ascii_uppercase().as_str() {
                "MD5" => (md5_hex, false),
                "MD5-SESS" => (md5_hex, true),
                "SHA-256" => (sha256_hex, false),
                "SHA-256-SESS" => (sha256_hex, true),
                _ => return None,
            };
        let nc = "00000001";
        let mut ha1 = hash(&format!("{user}:{}:{password}", self.realm));
        if session {
            ha1 = hash(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = hash(&format!("{method}:{uri}"));
        let response = if self.qop_auth {
            hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let mut header = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm={}, response=\"{response}\"",
            quoted(user),
            quoted(&self.realm),
            quoted(&self.nonce),
            quoted(uri),
            self.algorithm
        );
        if self.qop_auth {
            header.push_str(&format!(
                ", qop=auth, nc={nc}, cnonce=\"{}\"",
                quoted(cnonce)
            ));
        }
        if let Some(opaque) = &self.opaque {
            header.push_str(&format!(", opaque=\"{}\"", quoted(opaque)));
        }
        Some(header)
    }
}

/// `name=value` and `name="quoted, value"` pairs, separated by commas.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let name = name.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            match after.find(',') {
                Some(i) => (after[..i].trim().to_string(), &after[i..]),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((name, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn md5_hex(s: &str) -> String {
    hex(&md5::Md5::digest(s.as_bytes()))
}

fn sha256_hex(s: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::Challenge;

    /// RFC 7616, section 3.9.1: the same request answered with SHA-256 and MD5.
    #[test]
    fn the_rfc_examples() {
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (algorithm, response) in [
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let header = format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
                 algorithm={algorithm}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            );
            let challenge = Challenge::find(["Basic realm=\"x\"", header.as_str()]).unwrap();
            let answer = challenge
                .answer("Mufasa", "Circle of Life", "GET", "/dir/index.html", cnonce)
                .unwrap();
            assert!(
                answer.contains(&format!("response=\"{response}\"")),
                "{algorithm}: {answer}"
            );
            assert!(answer.contains("qop=auth, nc=00000001"), "{answer}");
            assert!(answer.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""));
        }
    }

    #[test]
    fn challenges_that_are_not_digest_or_not_spoken() {
        assert_eq!(Challenge::find(["Basic realm=\"x\""]), None);
        let odd =
            Challenge::find(["Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"]).unwrap();
        assert_eq!(odd.answer("u", "p", "GET", "/", "c"), None);
        // No qop: the older answer, without nc and cnonce.
        let old = Challenge::find(["Digest realm=\"r\", nonce=\"n\""]).unwrap();
        let answer = old.answer("u", "p", "GET", "/", "c").unwrap();
        assert!(!answer.contains("qop"), "{answer}");
    }
}
