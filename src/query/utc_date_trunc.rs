//! `date_trunc` on UTC timestamps by DataFusion's own arithmetic path.
//!
//! DataFusion 55's `date_trunc` truncates a timestamp that carries a time zone to the hour
//! or a coarser unit value by value through chrono-tz (an offset lookup and a formatted
//! string per row), even when the zone is UTC, where hours and days are uniform and its
//! arithmetic path for timestamps without a zone gives the same values. Every timestamp
//! cclake writes is UTC, and `date_trunc('hour', event_timestamp)` is what hourly reports
//! group by: on the 10M-event lake a quarter of such a query's CPU went to that per-row path
//! (benches/README.md, "Issue 28, third round"). This wrapper hands DataFusion's function the
//! same values without their zone when the zone is UTC, and puts the zone back on the result;
//! any other zone or argument goes to DataFusion's function as it came.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{make_array, Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// DataFusion's `date_trunc` (`inner`), with UTC timestamps truncated as zone-less ones.
#[derive(Debug)]
pub struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    /// `inner`: the session's `date_trunc`.
    pub fn wrap(inner: Arc<ScalarUDF>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { inner })
    }
}

impl PartialEq for UtcDateTrunc {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for UtcDateTrunc {}

impl Hash for UtcDateTrunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

/// Zone names whose offset is always zero.
pub(crate) fn is_utc(zone: &str) -> bool {
    matches!(zone, "UTC" | "Etc/UTC" | "+00:00" | "Z")
}

/// The UTC zone a timestamp type carries, if it is one.
fn utc_zone(data_type: &DataType) -> Option<Arc<str>> {
    match data_type {
        DataType::Timestamp(_, Some(zone)) if is_utc(zone) => Some(Arc::clone(zone)),
        _ => None,
    }
}

/// `data_type` with `zone` in place of its zone, if it is a timestamp.
fn zoned_type(data_type: &DataType, zone: Option<Arc<str>>) -> DataType {
    match data_type {
        DataType::Timestamp(unit, _) => DataType::Timestamp(*unit, zone),
        other => other.clone(),
    }
}

/// The same values with `zone` as their zone (no copy of an array's buffers).
fn with_zone(value: ColumnarValue, zone: Option<Arc<str>>) -> Result<ColumnarValue> {
    Ok(match value {
        ColumnarValue::Array(array) => {
            let data_type = zoned_type(array.data_type(), zone);
            ColumnarValue::Array(make_array(array.to_data().into_builder().data_type(data_type).build()?))
        }
        ColumnarValue::Scalar(scalar) => ColumnarValue::Scalar(match scalar {
            ScalarValue::TimestampSecond(v, _) => ScalarValue::TimestampSecond(v, zone),
            ScalarValue::TimestampMillisecond(v, _) => ScalarValue::TimestampMillisecond(v, zone),
            ScalarValue::TimestampMicrosecond(v, _) => ScalarValue::TimestampMicrosecond(v, zone),
            ScalarValue::TimestampNanosecond(v, _) => ScalarValue::TimestampNanosecond(v, zone),
            other => other,
        }),
    })
}

fn zoned_field(field: &FieldRef, zone: Option<Arc<str>>) -> FieldRef {
    Arc::new(Field::clone(field).with_data_type(zoned_type(field.data_type(), zone)))
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(zone) = args.args.get(1).and_then(|value| utc_zone(&value.data_type())) else {
            return self.inner.invoke_with_args(args);
        };
        args.args[1] = with_zone(args.args[1].clone(), None)?;
        if let Some(field) = args.arg_fields.get_mut(1) {
            *field = zoned_field(field, None);
        }
        args.return_field = zoned_field(&args.return_field, None);
        with_zone(self.inner.invoke_with_args(args)?, Some(zone))
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.inner().output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, AsArray, TimestampMicrosecondArray, TimestampNanosecondArray};
    use arrow::datatypes::{TimeUnit, TimestampMicrosecondType};
    use datafusion::config::ConfigOptions;

    fn call(function: &ScalarUDF, unit: &str, value: ColumnarValue, rows: usize) -> ColumnarValue {
        let data_type = value.data_type();
        let field = Arc::new(Field::new("t", data_type.clone(), true));
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Scalar(ScalarValue::Utf8(Some(unit.into()))), value],
            arg_fields: vec![Arc::new(Field::new("u", DataType::Utf8, false)), Arc::clone(&field)],
            number_rows: rows,
            return_field: Arc::new(Field::new("date_trunc", data_type, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        function.invoke_with_args(args).unwrap()
    }

    fn micros(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros()
    }

    #[test]
    fn utc_timestamps_truncate_as_worked_out_by_hand_and_as_datafusion_does() {
        let inner = datafusion::functions::datetime::date_trunc();
        let ours = UtcDateTrunc::wrap(Arc::clone(&inner));
        let utc: Option<Arc<str>> = Some("UTC".into());
        // Worked out by hand: Wednesday 6 March 2024, 10:37:12.5 UTC; and a time before 1970.
        let at = micros("2024-03-06T10:37:12.5Z");
        for (unit, expected) in [
            ("second", "2024-03-06T10:37:12Z"),
            ("minute", "2024-03-06T10:37:00Z"),
            ("hour", "2024-03-06T10:00:00Z"),
            ("day", "2024-03-06T00:00:00Z"),
            ("week", "2024-03-04T00:00:00Z"),
            ("month", "2024-03-01T00:00:00Z"),
            ("quarter", "2024-01-01T00:00:00Z"),
            ("year", "2024-01-01T00:00:00Z"),
        ] {
            let value = ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(Some(at), utc.clone()));
            let got = call(&ours, unit, value, 1);
            assert_eq!(got.data_type(), DataType::Timestamp(TimeUnit::Microsecond, utc.clone()), "{unit}");
            let ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(Some(v), _)) = got else { panic!("{unit}: {got:?}") };
            assert_eq!(v, micros(expected), "{unit}");
        }
        assert_eq!(
            match call(&ours, "hour", ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(Some(micros("1969-12-31T23:59:59Z")), utc.clone())), 1) {
                ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v, _)) => v,
                other => panic!("{other:?}"),
            },
            Some(micros("1969-12-31T23:00:00Z"))
        );

        // Arrays of spread values (nulls among them), in µs and ns: the same values as
        // DataFusion's per-row path for the zone gives, the zone kept.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let values: Vec<Option<i64>> = (0..2000)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (i % 17 != 0).then(|| (seed % 8_000_000_000_000_000) as i64 - 3_000_000_000_000_000)
            })
            .collect();
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(values.clone()).with_timezone("UTC")),
            Arc::new(TimestampNanosecondArray::from(values.iter().map(|v| v.map(|v| v / 4)).collect::<Vec<_>>()).with_timezone("UTC")),
        ];
        for array in arrays {
            for unit in ["second", "minute", "hour", "day", "week", "month", "quarter", "year"] {
                let got = call(&ours, unit, ColumnarValue::Array(Arc::clone(&array)), array.len()).into_array(1).unwrap();
                let expected = call(&inner, unit, ColumnarValue::Array(Arc::clone(&array)), array.len()).into_array(1).unwrap();
                assert_eq!(got.data_type(), array.data_type(), "{unit}");
                assert_eq!(got.to_data(), expected.to_data(), "{unit} of {}", array.data_type());
            }
        }
        // Another zone is DataFusion's to truncate, as it came.
        let paris = TimestampMicrosecondArray::from(vec![Some(at)]).with_timezone("Europe/Paris");
        let got = call(&ours, "day", ColumnarValue::Array(Arc::new(paris.clone())), 1).into_array(1).unwrap();
        let expected = call(&inner, "day", ColumnarValue::Array(Arc::new(paris)), 1).into_array(1).unwrap();
        assert_eq!(got.as_primitive::<TimestampMicrosecondType>().value(0), expected.as_primitive::<TimestampMicrosecondType>().value(0));
        assert_eq!(got.data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Paris".into())));
    }
}
