//! Conversions at the Python boundary: JSON values both ways, durations, and
//! core errors into the exception classes of `switchboard._errors` (looked up by
//! the error's stable `code()`, the only mapping the bindings use).

use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use serde_json::{Map, Number, Value};

/// Nesting limit for Python → JSON (a self-referencing list would never end).
const MAX_DEPTH: usize = 128;

/// A JSON value to hand back to Python.
#[derive(Debug)]
pub(crate) struct Json(pub(crate) Value);

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
}

/// The outcome of a core operation, converted under the GIL: a value, or the
/// exception class that matches the error's code. (A `PyErr` of a class looked up
/// at run time can only be built with the GIL, which the future does not hold.)
#[derive(Debug)]
pub(crate) struct Outcome<T>(pub(crate) Result<T, switchboard::Error>);

impl<'py, T> IntoPyObject<'py> for Outcome<T>
where
    T: IntoPyObject<'py>,
{
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.0 {
            Ok(v) => v.into_bound_py_any(py),
            Err(e) => Err(core_error(py, &e)),
        }
    }
}

/// `Ok(value)` as an awaitable's result.
pub(crate) fn ok<T>(value: T) -> PyResult<Outcome<T>> {
    Ok(Outcome(Ok(value)))
}

/// Converts a JSON value into Python objects (dict, list, str, int, float, bool, None).
pub(crate) fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for v in items {
                list.append(to_py(py, v)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => object_to_py(py, map)?.into_any(),
    })
}

/// Converts a JSON object into a dict.
pub(crate) fn object_to_py<'py>(
    py: Python<'py>,
    map: &Map<String, Value>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in map {
        dict.set_item(k, to_py(py, v)?)?;
    }
    Ok(dict)
}

/// Converts a Python object into JSON: dict (str keys), list, tuple, str, int,
/// float (finite), bool, None. Anything else is a `TypeError`.
pub(crate) fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    from_py_at(obj, 0)
}

fn from_py_at(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "JSON nesting deeper than {MAX_DEPTH} levels"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: `True` is an `int` in Python.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(PyValueError::new_err(
            "integer out of the JSON range (64 bits)",
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err("NaN and infinity are not JSON"));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::with_capacity(d.len());
        for (k, v) in d.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("JSON object keys must be str"))?;
            map.insert(key.to_cow()?.into_owned(), from_py_at(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return l.iter().map(|v| from_py_at(&v, depth + 1)).collect();
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t.iter().map(|v| from_py_at(&v, depth + 1)).collect();
    }
    Err(PyTypeError::new_err(format!(
        "{} is not JSON-serialisable",
        obj.get_type().name()?
    )))
}

/// A duration given as seconds (int or float) or a `datetime.timedelta`.
pub(crate) fn duration(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Duration> {
    let secs: f64 = if obj.hasattr("total_seconds")? {
        obj.call_method0("total_seconds")?.extract()?
    } else if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name}: seconds as int or float, or a timedelta"
        )));
    } else {
        obj.extract().map_err(|_| {
            PyTypeError::new_err(format!("{name}: seconds as int or float, or a timedelta"))
        })?
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(config_error(&format!(
            "{name} must be a finite number of seconds >= 0"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

static ERRORS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `switchboard._errors.from_code(code, message)`: the exception for a code.
fn make_error(py: Python<'_>, code: &str, message: &str) -> PyErr {
    let factory = ERRORS.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("switchboard._errors")?
            .getattr("from_code")?
            .unbind())
    });
    match factory.and_then(|f| f.bind(py).call1((code, message))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// The Python exception for a core error.
pub(crate) fn core_error(py: Python<'_>, e: &switchboard::Error) -> PyErr {
    let message = match e {
        switchboard::Error::Protocol { message, .. } => message.clone(),
        other => other.to_string(),
    };
    make_error(py, e.code(), &message)
}

/// A `ConfigError`.
pub(crate) fn config_error(message: &str) -> PyErr {
    Python::attach(|py| make_error(py, "config", message))
}

/// A `ClosedError`.
pub(crate) fn closed_error(message: &str) -> PyErr {
    Python::attach(|py| make_error(py, "closed", message))
}
