//! Arguments from Python, checked before anything is sent.
//!
//! Keys and values are `bytes`, `bytearray` or `str` (sent as UTF-8); collection names,
//! keys and consistency levels are checked with the very rules the node applies
//! (`dhrt_core::store::validate_collection`, `validate_key`, `Consistency`'s parser), so
//! a bad argument fails here with `dhrt.InvalidInputError` (or `InvalidTypeError`,
//! `TooLargeError`) and never reaches the wire.

use crate::errors;
use bytes::Bytes;
use dhrt_core::{
    catalogue::{CollectionSettings, SettingsChange, MAX_REPLICAS},
    membership::{validate_label, MAX_LABELS},
    proto::client::Consistency,
    ring::Labels,
    store::{validate_collection, validate_key},
    wire,
};
use pyo3::{
    prelude::*,
    types::{PyByteArray, PyBytes, PyDict, PyInt, PyString},
    Borrowed,
};
use std::time::Duration;

/// Bytes from a `bytes`, `bytearray` or `str` argument; `what` names it in errors.
fn blob(obj: Borrowed<'_, '_, PyAny>, what: &str) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        Ok(Bytes::copy_from_slice(b.as_bytes()))
    } else if let Ok(s) = obj.cast::<PyString>() {
        Ok(Bytes::copy_from_slice(s.to_cow()?.as_bytes()))
    } else if let Ok(b) = obj.cast::<PyByteArray>() {
        Ok(Bytes::from(b.to_vec()))
    } else {
        let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        Err(errors::wrong_type(format!("{what} must be str or bytes, not {kind}")))
    }
}

/// A key: 1 byte to 64 KiB.
pub struct Key(pub Bytes);

impl<'a, 'py> FromPyObject<'a, 'py> for Key {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let key = blob(obj, "a key")?;
        // The node's own rule; too long is "too large", empty is "invalid".
        validate_key(&key).map_err(|e| match key.is_empty() {
            true => errors::invalid(e.to_string()),
            false => errors::too_large(e.to_string()),
        })?;
        Ok(Key(key))
    }
}

/// A value; its size is checked against the client's limit by [`check_value`].
pub struct Value(pub Bytes);

impl<'a, 'py> FromPyObject<'a, 'py> for Value {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        blob(obj, "a value").map(Value)
    }
}

/// Refuses a value over `max` bytes.
pub fn check_value(value: &Value, max: usize) -> PyResult<()> {
    if value.0.len() > max {
        return Err(errors::too_large(format!(
            "a value of {} bytes is over the limit of {max} bytes; store it in parts, or \
             start the nodes with a larger --max-value and connect with max_value_bytes=",
            value.0.len()
        )));
    }
    Ok(())
}

/// Refuses a batch whose frame the node would refuse: `items` bytes in all.
pub fn check_batch(bytes: usize, max_value: usize) -> PyResult<()> {
    // As the node computes its frame limit (`server::start`), less room for the framing.
    let limit = wire::DEFAULT_MAX_FRAME.max(max_value + (1 << 20)) - (64 << 10);
    if bytes > limit {
        return Err(errors::too_large(format!(
            "a batch of {bytes} bytes is over the {limit} bytes one request may carry; \
             split it into smaller batches"
        )));
    }
    Ok(())
}

/// A collection name: 1–64 characters from `A-Z a-z 0-9 _ - .`, not `.` or `..`.
pub struct Collection(pub String);

impl<'a, 'py> FromPyObject<'a, 'py> for Collection {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let Ok(name) = obj.cast::<PyString>() else {
            let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            return Err(errors::wrong_type(format!("a collection name must be str, not {kind}")));
        };
        let name = name.to_cow()?;
        validate_collection(&name).map_err(|e| errors::invalid(e.to_string()))?;
        Ok(Collection(name.to_string()))
    }
}

/// A consistency level: `"one"`, `"quorum"`, `"all"`, `"default"` or a number of
/// replicas `>= 1` (an int, or its digits as a string).
pub struct Level(pub Consistency);

impl<'a, 'py> FromPyObject<'a, 'py> for Level {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        const USE: &str = "use \"one\", \"quorum\", \"all\" or a number of replicas such as 2";
        let level = if let Ok(s) = obj.cast::<PyString>() {
            let s = s.to_cow()?;
            s.parse::<Consistency>()
                .map_err(|_| errors::invalid(format!("invalid consistency {s:?}: {USE}")))?
        } else if obj.is_instance_of::<pyo3::types::PyBool>() {
            return Err(errors::wrong_type(format!("consistency must be a str or an int: {USE}")));
        } else if let Ok(n) = obj.extract::<i64>() {
            match u8::try_from(n) {
                Ok(n) => Consistency::N(n),
                Err(_) => return Err(errors::invalid(format!("invalid consistency {n}: {USE}"))),
            }
        } else {
            let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            return Err(errors::wrong_type(format!(
                "consistency must be a str or an int, not {kind}: {USE}"
            )));
        };
        if level == Consistency::N(0) {
            return Err(errors::invalid(format!("consistency 0 asks no replica: {USE}")));
        }
        Ok(Level(level))
    }
}

/// A duration in seconds (`int` or `float`, `> 0`); `what` names it in errors.
fn seconds(obj: Borrowed<'_, '_, PyAny>, what: &str) -> PyResult<Duration> {
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(errors::wrong_type(format!("{what} must be a number of seconds, not bool")));
    }
    let Ok(secs) = obj.extract::<f64>() else {
        let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        return Err(errors::wrong_type(format!("{what} must be a number of seconds, not {kind}")));
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(errors::invalid(format!(
            "{what} must be a positive number of seconds, not {secs}"
        )));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| errors::invalid(format!("{what} of {secs} s is too long")))
}

/// A time to live: seconds `> 0`, at least one millisecond once rounded up.
pub struct Ttl(pub Duration);

impl<'a, 'py> FromPyObject<'a, 'py> for Ttl {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let ttl = seconds(obj, "ttl")?;
        Ok(Ttl(ttl.max(Duration::from_millis(1))))
    }
}

/// How long a call may wait: seconds `> 0`.
pub struct Timeout(pub Duration);

impl<'a, 'py> FromPyObject<'a, 'py> for Timeout {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        seconds(obj, "timeout").map(Timeout)
    }
}

/// A quota (`max_keys`, `max_bytes`, named by `what`): an `int`, not a `bool`. Zero is
/// left to the catalogue's own rule ([`CollectionSettings::validate`]).
fn quota(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if obj.is_instance_of::<pyo3::types::PyBool>() || !obj.is_instance_of::<PyInt>() {
        let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        return Err(errors::wrong_type(format!("{what} must be an int, not {kind}")));
    }
    obj.extract::<u64>().map_err(|_| {
        errors::invalid(format!("{what} must be a positive int below 2**64, not {obj}"))
    })
}

/// A replication factor: an `int` (not a `bool`) from 1 to [`MAX_REPLICAS`].
fn replicas(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    if obj.is_instance_of::<pyo3::types::PyBool>() || !obj.is_instance_of::<PyInt>() {
        let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        return Err(errors::wrong_type(format!("replicas must be an int, not {kind}")));
    }
    match obj.extract::<u32>() {
        Ok(n) if (1..=MAX_REPLICAS).contains(&n) => Ok(n),
        _ => Err(errors::invalid(format!(
            "a collection keeps 1 to {MAX_REPLICAS} replicas of each key, not {obj}"
        ))),
    }
}

/// A node selector: a `dict` of `str` label keys to `str` values (`{"disk": "ssd"}`),
/// each spelled as a node's `--label` is ([`validate_label`]), at most [`MAX_LABELS`].
fn selector(obj: &Bound<'_, PyAny>) -> PyResult<Labels> {
    const SHAPE: &str = "a dict of node labels such as {\"disk\": \"ssd\"} ({} or None: any node)";
    let Ok(dict) = obj.cast::<PyDict>() else {
        let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        return Err(errors::wrong_type(format!("select must be {SHAPE}, not {kind}")));
    };
    let mut labels = Labels::new();
    for (key, value) in dict.iter() {
        let (Ok(key), Ok(value)) = (key.cast::<PyString>(), value.cast::<PyString>()) else {
            let kind = |o: &Bound<'_, PyAny>| o.get_type().name().map(|n| n.to_string());
            return Err(errors::wrong_type(format!(
                "select must be {SHAPE}: its keys and values are str, not {} and {}",
                kind(&key).unwrap_or_default(),
                kind(&value).unwrap_or_default()
            )));
        };
        let (key, value) = (key.to_cow()?.into_owned(), value.to_cow()?.into_owned());
        if !validate_label(&key) || !validate_label(&value) {
            return Err(errors::invalid(format!(
                "select {{{key:?}: {value:?}}}: a node label's key and value are 1 to 64 \
                 characters of A-Z a-z 0-9 . _ - (as {{\"disk\": \"ssd\"}})"
            )));
        }
        labels.insert(key, value);
    }
    if labels.len() > MAX_LABELS {
        return Err(errors::invalid(format!(
            "a selector names at most {MAX_LABELS} labels, not {}",
            labels.len()
        )));
    }
    Ok(labels)
}

/// A zone label: a `str` spelled as a node label's key ([`validate_label`]).
fn zone_label(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let Ok(label) = obj.cast::<PyString>() else {
        let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        return Err(errors::wrong_type(format!(
            "zone_label must be a str, the key of a node label such as \"zone\", not {kind}"
        )));
    };
    let label = label.to_cow()?.into_owned();
    if !validate_label(&label) {
        return Err(errors::invalid(format!(
            "zone label {label:?}: a zone label is 1 to 64 characters of A-Z a-z 0-9 . _ - \
             (as \"zone\")"
        )));
    }
    Ok(label)
}

/// The settings named in a dict of `consistency`, `ttl` (seconds), `max_keys`,
/// `max_bytes`, `replicas`, `select` (a dict of node labels) and `zone_label`: each key
/// present changes that setting, to the cluster's default when its value is `None` (an
/// empty `select` too: any node). Checked with the catalogue's own rules, so bad
/// settings never reach the wire.
pub struct Settings(pub SettingsChange);

impl<'a, 'py> FromPyObject<'a, 'py> for Settings {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        const FIELDS: &str =
            "consistency, ttl, max_keys, max_bytes, replicas, select or zone_label";
        let Ok(dict) = obj.cast::<PyDict>() else {
            let kind = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            return Err(errors::wrong_type(format!("settings must be a dict, not {kind}")));
        };
        let mut change = SettingsChange::default();
        for (name, value) in dict.iter() {
            let name: String = name.extract().map_err(|_| {
                errors::wrong_type(format!("a setting's name must be a str: {FIELDS}"))
            })?;
            let set = !value.is_none();
            match name.as_str() {
                "consistency" => {
                    change.consistency =
                        Some(set.then(|| value.extract::<Level>().map(|l| l.0)).transpose()?);
                }
                "ttl" => {
                    let ms = |t: Ttl| u64::try_from(t.0.as_millis()).unwrap_or(u64::MAX);
                    change.ttl_ms = Some(set.then(|| value.extract::<Ttl>().map(ms)).transpose()?);
                }
                "max_keys" => {
                    change.max_keys = Some(set.then(|| quota(&value, "max_keys")).transpose()?);
                }
                "max_bytes" => {
                    change.max_bytes = Some(set.then(|| quota(&value, "max_bytes")).transpose()?);
                }
                "replicas" => {
                    change.replicas = Some(set.then(|| replicas(&value)).transpose()?);
                }
                "select" => {
                    let labels = set.then(|| selector(&value)).transpose()?;
                    change.select = Some(labels.filter(|l| !l.is_empty()));
                }
                "zone_label" => {
                    change.zone_label = Some(set.then(|| zone_label(&value)).transpose()?);
                }
                other => {
                    return Err(errors::invalid(format!(
                        "a collection has no setting {other:?}: its settings are {FIELDS}"
                    )))
                }
            }
        }
        // The values it sets, checked as the node checks a collection's settings.
        change
            .apply(&CollectionSettings::default())
            .validate()
            .map_err(|e| errors::invalid(e.to_string()))?;
        Ok(Settings(change))
    }
}

/// Bytes on their way back to Python (as `bytes`).
pub struct Blob(pub Bytes);

impl<'py> IntoPyObject<'py> for Blob {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyBytes::new(py, &self.0))
    }
}
