//! Tables as clients see them: every column in the plain Arrow type that a query returns.
//!
//! delta-rs hands partition columns out as `Dictionary(UInt16, Utf8)`. Operators that merge
//! dictionaries from many batches (`last_value` over a partition column, repartitioning of
//! group keys) then overflow the 16-bit key once more than 65,536 distinct values meet in one
//! array: "Can not create index of type UInt16 from value 65536", at random, depending on how
//! batches happen to be grouped. And metadata (GetTables, `information_schema`) would report
//! a dictionary type that no query result carries. Casting the dictionaries away right at the
//! scan fixes both; string columns are read as `Utf8` (not `Utf8View`) by the session's
//! configuration (see [`super::read_only_session`]).

use std::borrow::Cow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Constraints;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::{cast, col};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

/// The plain type a client reads for `data_type`, when it differs.
pub fn plain_type(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => Some(DataType::Utf8),
        DataType::BinaryView | DataType::LargeBinary => Some(DataType::Binary),
        DataType::Dictionary(_, value) => Some(plain_type(value).unwrap_or_else(|| (**value).clone())),
        _ => None,
    }
}

/// `schema` with every dictionary and view type replaced by its plain type.
pub fn plain_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match plain_type(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A table provider whose scan casts dictionary and view columns to plain types.
#[derive(Debug)]
pub struct PlainTypesTable {
    inner: Arc<dyn TableProvider>,
    /// The inner schema with plain types: what planning, metadata and results see.
    schema: SchemaRef,
}

impl PlainTypesTable {
    /// Wraps `inner`; returns it unchanged when its schema has nothing to cast.
    pub fn wrap(inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        let inner_schema = inner.schema();
        if inner_schema.fields().iter().all(|f| plain_type(f.data_type()).is_none()) {
            return inner;
        }
        let schema = plain_schema(&inner_schema);
        Arc::new(Self { inner, schema })
    }
}

#[async_trait]
impl TableProvider for PlainTypesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        None
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, projection, filters, limit).await?;
        let input = plan.schema();
        let mut needs_cast = false;
        let mut exprs = Vec::with_capacity(input.fields().len());
        for field in input.fields().iter() {
            let column = col(field.name(), &input)?;
            let expr = match plain_type(field.data_type()) {
                Some(t) => {
                    needs_cast = true;
                    cast(column, &input, t)?
                }
                None => column,
            };
            exprs.push((expr, field.name().to_string()));
        }
        if !needs_cast {
            return Ok(plan);
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
    }

    /// Filters are handed to the Delta scan for file and partition pruning, but evaluated
    /// again above it on the plain-typed columns: the scan sees them against its own
    /// (dictionary) types, so exactness is not claimed.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(self
            .inner
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(|p| match p {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_and_views_become_plain() {
        let dict = DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8));
        assert_eq!(plain_type(&dict), Some(DataType::Utf8));
        let dict_view = DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8View));
        assert_eq!(plain_type(&dict_view), Some(DataType::Utf8));
        assert_eq!(plain_type(&DataType::Utf8View), Some(DataType::Utf8));
        assert_eq!(plain_type(&DataType::Int64), None);
        let schema = Schema::new(vec![Field::new("q", dict, true), Field::new("n", DataType::Int64, false)]);
        let plain = plain_schema(&schema);
        assert_eq!(plain.field(0).data_type(), &DataType::Utf8);
        assert!(!plain.field(1).is_nullable());
    }
}
