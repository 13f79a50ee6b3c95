//! Reading the arrays scripts return.

use redis::Value;
use sayiir_persistence::BackendError;

use crate::error::{self, At};

/// The elements of an array reply, taken one by one.
#[derive(Debug)]
pub(crate) struct Items<'a> {
    items: std::vec::IntoIter<Value>,
    at: At<'a>,
}

impl<'a> Items<'a> {
    /// The elements of `value`, which must be an array.
    pub(crate) fn new(value: Value, at: At<'a>) -> Result<Self, BackendError> {
        match value {
            Value::Array(items) => Ok(Self { items: items.into_iter(), at }),
            other => Err(error::reply(&at, &format!("expected an array, got {}", kind(&other)))),
        }
    }

    /// How many elements are left.
    pub(crate) fn remaining(&self) -> usize {
        self.items.len()
    }

    /// The next element, which may be nil (a Lua `false`).
    pub(crate) fn value(&mut self) -> Result<Value, BackendError> {
        self.items.next().ok_or_else(|| error::reply(&self.at, "array too short"))
    }

    /// The next element as bytes, `None` for nil.
    pub(crate) fn bytes(&mut self) -> Result<Option<Vec<u8>>, BackendError> {
        let at = self.at;
        bytes(self.value()?, &at)
    }

    /// The next element as text, `None` for nil.
    pub(crate) fn text(&mut self) -> Result<Option<String>, BackendError> {
        let at = self.at;
        self.bytes()?
            .map(|b| String::from_utf8(b).map_err(|_| error::reply(&at, "text is not UTF-8")))
            .transpose()
    }

    /// The next element as an integer, `None` for nil.
    pub(crate) fn int(&mut self) -> Result<Option<i64>, BackendError> {
        let at = self.at;
        match self.value()? {
            Value::Nil => Ok(None),
            Value::Int(n) => Ok(Some(n)),
            Value::BulkString(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| error::reply(&at, "expected an integer")),
            other => Err(error::reply(&at, &format!("expected an integer, got {}", kind(&other)))),
        }
    }
}

/// A bulk-string or status reply as bytes, `None` for nil.
pub(crate) fn bytes(value: Value, at: &At<'_>) -> Result<Option<Vec<u8>>, BackendError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        Value::Okay => Ok(Some(b"OK".to_vec())),
        Value::Int(n) => Ok(Some(n.to_string().into_bytes())),
        other => Err(error::reply(at, &format!("expected a string, got {}", kind(&other)))),
    }
}

/// A hash field and its value.
pub(crate) type FieldValue = (Vec<u8>, Vec<u8>);

/// The field/value pairs of an `HGETALL` reply: flat pairs (RESP2) or a map (RESP3).
pub(crate) fn pairs(value: Value, at: &At<'_>) -> Result<Vec<FieldValue>, BackendError> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Array(flat) => {
            let mut flat = flat.into_iter();
            std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
        }
        Value::Map(pairs) => pairs,
        other => {
            return Err(error::reply(at, &format!("expected a hash, got {}", kind(&other))));
        }
    };
    pairs
        .into_iter()
        .map(|(field, value)| {
            Ok((bytes(field, at)?.unwrap_or_default(), bytes(value, at)?.unwrap_or_default()))
        })
        .collect()
}

/// A hash of task id → output (results, archive), from an `HGETALL` reply.
pub(crate) fn results(
    value: Value,
    at: &At<'_>,
) -> Result<Vec<(String, bytes::Bytes)>, BackendError> {
    let pairs = pairs(value, at)?;
    let mut results = Vec::with_capacity(pairs.len() + 1);
    for (task, output) in pairs {
        let task = String::from_utf8(task)
            .map_err(|_| error::corrupt(at, "a stored task id is not UTF-8"))?;
        results.push((task, bytes::Bytes::from(output)));
    }
    Ok(results)
}

/// The reply `ok` of a script on one workflow: `Ok`, or `NotFound` for `not_found`.
pub(crate) fn found(value: Value, at: &At<'_>, instance_id: &str) -> Result<(), BackendError> {
    match word(value, at)?.as_str() {
        "ok" => Ok(()),
        "not_found" => Err(BackendError::NotFound(instance_id.to_string())),
        other => Err(error::reply(at, other)),
    }
}

/// A status word a script returned (`'ok'`, `'not_found'`, ...).
pub(crate) fn word(value: Value, at: &At<'_>) -> Result<String, BackendError> {
    let raw = bytes(value, at)?.ok_or_else(|| error::reply(at, "nil status"))?;
    String::from_utf8(raw).map_err(|_| error::reply(at, "status is not UTF-8"))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) | Value::Okay => "a status",
        Value::ServerError(_) => "an error",
        _ => "another type",
    }
}
