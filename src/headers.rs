//! Reading request headers that must appear at most once.

use http::header::AsHeaderName;
use http::{HeaderMap, HeaderValue};

/// A header that must appear at most once appeared several times. Two values of a
/// security-relevant header (two `Host`s, two `Authorization`s, two session ids) are refused,
/// never resolved by picking one: another component may pick the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repeated;

/// The one value of `name`, `None` when absent, or [`Repeated`].
pub(crate) fn single<K: AsHeaderName>(
    headers: &HeaderMap,
    name: K,
) -> Result<Option<&HeaderValue>, Repeated> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        (Some(_), Some(_)) => Err(Repeated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_one_or_repeated() {
        let mut h = HeaderMap::new();
        assert_eq!(single(&h, "host"), Ok(None));
        h.append("host", HeaderValue::from_static("a"));
        assert_eq!(single(&h, "host"), Ok(Some(&HeaderValue::from_static("a"))));
        h.append("host", HeaderValue::from_static("a"));
        assert_eq!(single(&h, "host"), Err(Repeated));
    }
}
