//! `||` on strings planned as a function, so that the bounds on functions apply to it.

use std::hash::Hash;
use std::sync::Arc;
use arrow::array::Array;
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{Operator, TypeSignature, Volatility};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;

/// `||` between strings (or binaries), as DataFusion's operator computes it (both sides cast
/// to their common type, NULL if either is), but as a function, so that the bounded functions wrapper ([`super::limits`]) sees what
/// it produces: `queue_name || repeat('x', 1000000)` is a megabyte a row.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ConcatOperator {
    signature: Signature,
}

impl ConcatOperator {
    pub(super) fn new() -> Self {
        Self { signature: Signature::new(TypeSignature::UserDefined, Volatility::Immutable) }
    }

    fn types(arg_types: &[DataType]) -> Result<(DataType, DataType, DataType)> {
        let [left, right] = arg_types else {
            return Err(DataFusionError::Plan("|| takes two operands".into()));
        };
        let coercer = BinaryTypeCoercer::new(left, &Operator::StringConcat, right);
        let (left, right) = coercer.get_input_types()?;
        Ok((left, right, coercer.get_result_type()?))
    }
}

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        "||"
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [left, right] => Ok(format!("{left} || {right}")),
            _ => Err(DataFusionError::Plan("|| takes two operands".into())),
        }
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [left, right] => Ok(format!("{} || {}", left.schema_name(), right.schema_name())),
            _ => Err(DataFusionError::Plan("|| takes two operands".into())),
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let (left, right, _) = Self::types(arg_types)?;
        Ok(vec![left, right])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(Self::types(arg_types)?.2)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return Err(DataFusionError::Internal("|| takes two operands".into()));
        };
        let both_scalar = matches!((left, right), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let rows = if both_scalar { 1 } else { args.number_rows };
        let (left, right) = (left.to_array(rows)?, right.to_array(rows)?);
        let joined = arrow::compute::kernels::concat_elements::concat_elements_dyn(&left, &right)?;
        let joined = if joined.data_type() == args.return_field.data_type() {
            joined
        } else {
            arrow::compute::cast(&joined, args.return_field.data_type())?
        };
        if both_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&joined, 0)?))
        } else {
            Ok(ColumnarValue::Array(joined))
        }
    }
}

/// Plans `a || b` between strings (or binaries) as the bounded [`ConcatOperator`]; lists are
/// left to DataFusion's planner (`array_concat`, a function, hence bounded too).
#[derive(Debug)]
pub(super) struct ConcatPlanner {
    pub(super) concat: Arc<ScalarUDF>,
}

impl ExprPlanner for ConcatPlanner {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        let is_list = |e: &Expr| {
            e.get_type(schema)
                .map(|t| matches!(t, DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)))
                .unwrap_or(true)
        };
        if expr.op != datafusion::sql::sqlparser::ast::BinaryOperator::StringConcat || is_list(&expr.left) || is_list(&expr.right) {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::clone(&self.concat),
            vec![expr.left, expr.right],
        ))))
    }
}
