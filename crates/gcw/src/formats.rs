//! The standard library's functions over text formats: regular expressions (RE2
//! syntax, as Google's), URL encoding, times (`time.format`, `time.parse`) and hashes
//! (`hash.compute_checksum`, `hash.compute_hmac`).

use base64::Engine;
use md5::Digest;
use serde_json::{Value, json};

use crate::eval::{charge_bytes, charge_steps};
use crate::value::{self, Raised, type_error, type_name, value_error};

/// The largest compiled regular expression: a hostile pattern fails to compile
/// rather than take the memory.
const REGEX_BYTES: usize = 1 << 20;

fn string<'v>(args: &'v [Value], i: usize, function: &str) -> Result<&'v str, Raised> {
    args.get(i).and_then(Value::as_str).ok_or_else(|| {
        type_error(format!(
            "{function}: argument {} must be a string, not {}",
            i + 1,
            args.get(i).map_or("nothing", type_name)
        ))
    })
}

fn regex(pattern: &str, function: &str) -> Result<regex::Regex, Raised> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_BYTES)
        .build()
        .map_err(|e| {
            value_error(format!(
                "{function}: the regular expression is not valid: {e}"
            ))
        })
}

/// Bytes as a Cloud Workflows value (see `stdlib`).
fn bytes_value(bytes: &[u8]) -> Value {
    json!({ crate::stdlib::BYTES: base64::engine::general_purpose::STANDARD.encode(bytes) })
}

/// The bytes of a value that is bytes, or of a string's UTF-8.
fn bytes_of(value: &Value, function: &str) -> Result<Vec<u8>, Raised> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        other => crate::stdlib::as_bytes(other).ok_or_else(|| {
            type_error(format!(
                "{function}: expected bytes or a string, not {}",
                type_name(other)
            ))
        }),
    }
}

/// The functions of this module, by name: their value, or `None` if `name` is not one.
pub(crate) fn call(name: &str, args: &[Value]) -> Option<Result<Value, Raised>> {
    Some(match name {
        "text.match_regex" => (|| {
            let (source, pattern) = (string(args, 0, name)?, string(args, 1, name)?);
            charge_steps(source.len())?;
            Ok(Value::Bool(regex(pattern, name)?.is_match(source)))
        })(),
        "text.find_all_regex" => (|| {
            let (source, pattern) = (string(args, 0, name)?, string(args, 1, name)?);
            charge_steps(source.len())?;
            let found: Vec<Value> = regex(pattern, name)?
                .find_iter(source)
                .map(|m| json!({"index": source[..m.start()].chars().count(), "match": m.as_str()}))
                .collect();
            charge_bytes(64 * found.len())?;
            Ok(Value::Array(found))
        })(),
        "text.replace_all_regex" => (|| {
            let (source, pattern, replacement) = (
                string(args, 0, name)?,
                string(args, 1, name)?,
                string(args, 2, name)?,
            );
            charge_steps(source.len())?;
            // Groups are written `\1` in the replacement, as in RE2.
            let replacement = regex::Regex::new(r"\\(\d)")
                .expect("a valid pattern")
                .replace_all(replacement, "$${$1}");
            let out = regex(pattern, name)?
                .replace_all(source, replacement.as_ref())
                .into_owned();
            charge_bytes(out.len())?;
            Ok(Value::String(out))
        })(),
        "text.url_encode" | "text.url_encode_plus" => (|| {
            let source = string(args, 0, name)?;
            // What a URL's path or query may carry as is: letters, digits, `-._~`.
            const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
                .remove(b'-')
                .remove(b'.')
                .remove(b'_')
                .remove(b'~');
            let mut out = percent_encoding::utf8_percent_encode(source, KEEP).to_string();
            if name == "text.url_encode_plus" {
                out = out.replace("%20", "+");
            }
            charge_bytes(out.len())?;
            Ok(Value::String(out))
        })(),
        "text.url_decode" => (|| {
            let source = string(args, 0, name)?;
            let out = percent_encoding::percent_decode_str(source)
                .decode_utf8()
                .map_err(|_| value_error("text.url_decode: the decoded bytes are not UTF-8"))?
                .into_owned();
            charge_bytes(out.len())?;
            Ok(Value::String(out))
        })(),
        "time.format" => (|| {
            let seconds = value::Num::of(&args[0])
                .ok_or_else(|| {
                    type_error("time.format: expected seconds since the epoch, a number")
                })?
                .as_f64();
            let nanos = (seconds * 1e9).round();
            if !nanos.is_finite() || nanos.abs() > 2.5e26 {
                return Err(value_error("time.format: the time is out of range"));
            }
            let at = jiff::Timestamp::from_nanosecond(nanos as i128)
                .map_err(|e| value_error(format!("time.format: {e}")))?;
            let text = match args.get(1) {
                None | Some(Value::Null) => at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                Some(Value::String(zone)) => {
                    let zoned = at.in_tz(zone).map_err(|e| {
                        value_error(format!("time.format: the time zone {zone:?}: {e}"))
                    })?;
                    zoned.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
                }
                Some(other) => {
                    return Err(type_error(format!(
                        "time.format: the time zone is a string, not {}",
                        type_name(other)
                    )));
                }
            };
            Ok(Value::String(text))
        })(),
        "time.parse" => (|| {
            let text = string(args, 0, name)?;
            let at: jiff::Timestamp = text.parse().map_err(|e| {
                value_error(format!("time.parse: {text:?} is not an RFC 3339 time: {e}"))
            })?;
            value::double_or_error(at.as_nanosecond() as f64 / 1e9, "time.parse")
        })(),
        "hash.compute_checksum" => (|| {
            let data = bytes_of(&args[0], name)?;
            charge_steps(data.len())?;
            let algorithm = string(args, 1, name)?;
            let digest = match algorithm {
                "MD5" => md5::Md5::digest(&data).to_vec(),
                "SHA1" => digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &data),
                "SHA256" => digest(&ring::digest::SHA256, &data),
                "SHA384" => digest(&ring::digest::SHA384, &data),
                "SHA512" => digest(&ring::digest::SHA512, &data),
                other => {
                    return Err(value_error(format!(
                        "hash.compute_checksum: unknown algorithm {other:?} (MD5, SHA1, SHA256, SHA384 or SHA512)"
                    )));
                }
            };
            Ok(bytes_value(&digest))
        })(),
        "hash.compute_hmac" => (|| {
            let key = bytes_of(&args[0], name)?;
            let data = bytes_of(&args[1], name)?;
            charge_steps(data.len())?;
            let algorithm = match string(args, 2, name)? {
                "SHA1" => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                "SHA256" => ring::hmac::HMAC_SHA256,
                "SHA384" => ring::hmac::HMAC_SHA384,
                "SHA512" => ring::hmac::HMAC_SHA512,
                other => {
                    return Err(value_error(format!(
                        "hash.compute_hmac: unknown algorithm {other:?} (SHA1, SHA256, SHA384 or SHA512)"
                    )));
                }
            };
            let tag = ring::hmac::sign(&ring::hmac::Key::new(algorithm, &key), &data);
            Ok(bytes_value(tag.as_ref()))
        })(),
        _ => return None,
    })
}

fn digest(algorithm: &'static ring::digest::Algorithm, data: &[u8]) -> Vec<u8> {
    ring::digest::digest(algorithm, data).as_ref().to_vec()
}
