//! Allocation-free text forms shared by the SIEM encoders ([`crate::ecs`],
//! [`crate::ocsf`], [`crate::cef`]): RFC 3339 time, lowercase hex, numbers
//! as strings, YARA metadata values.
//!
//! Each type implements [`Display`](fmt::Display) (CEF writes it straight
//! into its escaper), [`Serialize`] as a JSON string through
//! `collect_str` (serde_json escapes it on the fly, no `String` in
//! between), and [`JsonSchema`] with the tightest schema that holds.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::events::MetaValue;

// ------------------------------------------------------------------ time

/// Nanoseconds since the Unix epoch, written as RFC 3339 UTC with the
/// fraction trimmed of trailing zeros (and left out when zero), e.g.
/// `2025-11-28T20:33:04.123456789Z`. Byte for byte what the `time` crate's
/// `Rfc3339` format writes, about ten times faster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub i64);

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day in 1..=31, month in 1..=12.
    (year, month as u8, day as u8)
}

fn two(buf: &mut [u8], v: u8) {
    buf[0] = b'0' + v / 10;
    buf[1] = b'0' + v % 10;
}

impl Rfc3339 {
    /// The text in a stack buffer: `(buffer, length)`, or `None` for a
    /// year outside 0..10000 (impossible for i64 nanoseconds: years
    /// 1677..2262).
    fn to_buf(self) -> Option<([u8; 30], usize)> {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000) as u32;
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400) as u32;
        if !(0..10_000).contains(&year) {
            return None;
        }
        // "YYYY-MM-DDTHH:MM:SS" + ".nnnnnnnnn" + "Z"
        let mut buf = *b"0000-00-00T00:00:00.000000000Z";
        let y = year as u16;
        two(&mut buf[0..2], (y / 100) as u8);
        two(&mut buf[2..4], (y % 100) as u8);
        two(&mut buf[5..7], month);
        two(&mut buf[8..10], day);
        two(&mut buf[11..13], (sod / 3600) as u8);
        two(&mut buf[14..16], (sod / 60 % 60) as u8);
        two(&mut buf[17..19], (sod % 60) as u8);
        let end = if nanos == 0 {
            19
        } else {
            let mut n = nanos;
            for i in (20..29).rev() {
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let mut end = 29;
            while buf[end - 1] == b'0' {
                end -= 1;
            }
            end
        };
        buf[end] = b'Z';
        Some((buf, end + 1))
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_buf() {
            // Only ASCII digits and punctuation were written.
            Some((buf, len)) => f.write_str(ascii(&buf[..len])),
            // The same fallback as `Timestamp::to_rfc3339` had.
            None => write!(f, "{}", self.0),
        }
    }
}

/// Text known to be ASCII.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.to_buf() {
            Some((buf, len)) => s.serialize_str(ascii(&buf[..len])),
            None => s.collect_str(self),
        }
    }
}

impl JsonSchema for Rfc3339 {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Rfc3339".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z$",
        })
    }
}

// ------------------------------------------------------------------- hex

/// Writes `2 * bytes.len()` hex digits to the front of `out`.
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(32) {
        hex_into(chunk, &mut buf);
        f.write_str(ascii(&buf[..2 * chunk.len()]))?;
    }
    Ok(())
}

/// Fixed-size bytes as lowercase hex (`2 * N` digits): trace and span ids,
/// sha256 digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hex<'a, const N: usize>(pub &'a [u8; N]);

impl<const N: usize> fmt::Display for Hex<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.0)
    }
}

impl<const N: usize> Serialize for Hex<'_, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if N <= 32 {
            let mut buf = [0u8; 64];
            hex_into(self.0, &mut buf);
            s.serialize_str(ascii(&buf[..2 * N]))
        } else {
            s.collect_str(self)
        }
    }
}

impl<const N: usize> JsonSchema for Hex<'_, N> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Hex{N}").into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": format!("^[0-9a-f]{{{}}}$", 2 * N),
        })
    }
}

/// Serializes a `Display` type as a JSON string, written on the fly, and
/// describes it in the JSON Schema as an inline string matching `pattern`.
macro_rules! display_as_string {
    ($ty:ident <'_>, $pattern:literal) => {
        impl serde::Serialize for $ty<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        $crate::render::display_as_string!(@schema $ty<'_>, $ty, $pattern);
    };
    ($ty:ident, $pattern:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        $crate::render::display_as_string!(@schema $ty, $ty, $pattern);
    };
    (@schema $full:ty, $name:ident, $pattern:literal) => {
        impl schemars::JsonSchema for $full {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "pattern": $pattern })
            }
        }
    };
}
pub(crate) use display_as_string;

/// Any bytes as lowercase hex (the exact bytes of a non-UTF-8 path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HexBytes<'a>(pub &'a [u8]);

impl fmt::Display for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.0)
    }
}

display_as_string!(HexBytes<'_>, "^([0-9a-f]{2})*$");

// --------------------------------------------------------------- numbers

/// An unsigned number written as a JSON string (ECS keeps ids such as
/// `user.id` and `file.inode` as keywords).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumText(pub u64);

impl fmt::Display for NumText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for NumText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut n = self.0;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        s.serialize_str(ascii(&buf[i..]))
    }
}

impl JsonSchema for NumText {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "NumText".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": "^(0|[1-9][0-9]*)$" })
    }
}

// ---------------------------------------------------------- YARA metadata

/// One YARA metadata value as JSON: a number, a boolean or a string (bytes
/// are decoded as UTF-8, invalid sequences replaced by U+FFFD). A float
/// that is not finite has no JSON form and is written as `null`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaJson<'a>(pub &'a MetaValue);

impl Serialize for MetaJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            MetaValue::Int(i) => s.serialize_i64(*i),
            MetaValue::Float(f) => s.serialize_f64(*f),
            MetaValue::Bool(b) => s.serialize_bool(*b),
            MetaValue::Str(v) => s.serialize_str(v),
            MetaValue::Bytes(b) => s.serialize_str(&String::from_utf8_lossy(b)),
        }
    }
}

impl fmt::Display for MetaJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            MetaValue::Int(i) => write!(f, "{i}"),
            MetaValue::Float(v) => write!(f, "{v}"),
            MetaValue::Bool(b) => write!(f, "{b}"),
            MetaValue::Str(v) => f.write_str(v),
            MetaValue::Bytes(b) => f.write_str(&String::from_utf8_lossy(b)),
        }
    }
}

impl JsonSchema for MetaJson<'_> {
    fn schema_name() -> Cow<'static, str> {
        "MetaValue".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A YARA metadata value. `null` only stands for a float that is not finite.",
            "anyOf": [
                { "type": "number" },
                { "type": "boolean" },
                { "type": "string" },
                { "const": null }
            ]
        })
    }
}

/// A rule's metadata as a JSON object. YARA allows a key more than once;
/// the last value wins, as it does when the object is read back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaMap<'a>(pub &'a [(String, MetaValue)]);

impl MetaMap<'_> {
    /// The entries that survive (the last of each key), in order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        let all = self.0;
        all.iter()
            .enumerate()
            .filter(move |(i, (k, _))| !all[i + 1..].iter().any(|(later, _)| later == k))
            .map(|(_, (k, v))| (k.as_str(), v))
    }
}

impl Serialize for MetaMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.entries() {
            map.serialize_entry(k, &MetaJson(v))?;
        }
        map.end()
    }
}

impl JsonSchema for MetaMap<'_> {
    fn schema_name() -> Cow<'static, str> {
        "MetaMap".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<MetaJson<'static>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Timestamp;

    fn via_time(ns: i64) -> String {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    #[test]
    fn rfc3339_matches_the_time_crate() {
        let mut cases = vec![
            0,
            1,
            -1,
            999_999_999,
            1_000_000_000,
            -1_000_000_000,
            -1_000_000_001,
            1_764_361_984_123_456_789,
            1_764_361_984_120_000_000,
            951_782_400_000_000_000,    // 2000-02-29
            4_107_542_400_000_000_000,  // 2100-03-01
            -2_208_988_800_000_000_000, // 1900-01-01
            i64::MIN,
            i64::MAX,
        ];
        // A day's worth of boundaries around every month of a leap and a
        // common year, and a pseudo-random sweep.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(x as i64);
            cases.push((x % 4_102_444_800_000_000_000) as i64);
        }
        for day in 0..800 {
            cases.push(day * 86_400_000_000_000 + 1_704_067_200_000_000_000);
        }
        for ns in cases {
            assert_eq!(Rfc3339(ns).to_string(), via_time(ns), "{ns}");
            assert_eq!(Timestamp(ns).to_rfc3339(), via_time(ns), "{ns}");
        }
    }

    #[test]
    fn hex_and_numbers() {
        assert_eq!(Hex(&[0x00, 0xab, 0xff]).to_string(), "00abff");
        let long: Vec<u8> = (0..=255).collect();
        assert_eq!(HexBytes(&long).to_string(), hex::encode(&long));
        assert_eq!(
            serde_json::to_string(&HexBytes(b"\xff/")).unwrap(),
            "\"ff2f\""
        );
        for n in [0, 7, 42, 1_000_000, u64::MAX] {
            assert_eq!(
                serde_json::to_string(&NumText(n)).unwrap(),
                format!("\"{n}\"")
            );
        }
        let digest: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(
            serde_json::to_value(Hex(&digest)).unwrap(),
            serde_json::Value::from(hex::encode(digest))
        );
        assert_eq!(
            serde_json::to_value(Rfc3339(1_764_361_984_120_000_000)).unwrap(),
            "2025-11-28T20:33:04.12Z"
        );
    }

    #[test]
    fn metadata_keeps_the_last_value_of_a_key() {
        let meta = vec![
            ("a".to_owned(), MetaValue::Int(1)),
            ("b".to_owned(), MetaValue::Bool(true)),
            ("a".to_owned(), MetaValue::Str("x".to_owned())),
            ("f".to_owned(), MetaValue::Float(f64::NAN)),
            ("bytes".to_owned(), MetaValue::Bytes(b"ok\xff".to_vec())),
        ];
        assert_eq!(
            serde_json::to_value(MetaMap(&meta)).unwrap(),
            serde_json::json!({"a": "x", "b": true, "f": null, "bytes": "ok\u{fffd}"})
        );
    }
}
