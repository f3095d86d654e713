//! Static answers of the Flight SQL metadata calls: GetSqlInfo (a full key set: older JDBC
//! drivers crash on missing keys), GetXdbcTypeInfo, and the result schemas of the key calls
//! (cclake has no keys: their results are empty, with the schema the spec gives).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{Nullable, Searchable, SqlInfo, XdbcDataType};

const KEYWORDS: &[&str] = &[
    "ABS", "ALL", "AND", "ANY", "ARRAY", "AS", "ASC", "BETWEEN", "BY", "CASE", "CAST", "COUNT", "CROSS",
    "CUBE", "CURRENT_DATE", "CURRENT_TIME", "DATE", "DESC", "DISTINCT", "ELSE", "END", "EXCEPT", "EXISTS",
    "EXPLAIN", "EXTRACT", "FALSE", "FILTER", "FIRST", "FOLLOWING", "FROM", "FULL", "GROUP", "GROUPING",
    "HAVING", "ILIKE", "IN", "INNER", "INTERSECT", "INTERVAL", "IS", "JOIN", "LAST", "LATERAL", "LEFT",
    "LIKE", "LIMIT", "NATURAL", "NOT", "NULL", "NULLS", "OFFSET", "ON", "OR", "ORDER", "OUTER", "OVER",
    "PARTITION", "PRECEDING", "QUALIFY", "RANGE", "RIGHT", "ROLLUP", "ROW", "ROWS", "SELECT", "SIMILAR",
    "THEN", "TIMESTAMP", "TRUE", "UNBOUNDED", "UNION", "UNNEST", "USING", "VALUES", "WHEN", "WHERE",
    "WINDOW", "WITH",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "cbrt", "ceil", "cos", "degrees", "exp", "floor", "ln",
    "log", "log10", "log2", "mod", "pi", "power", "radians", "random", "round", "signum", "sin", "sqrt",
    "tan", "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii", "btrim", "char_length", "concat", "concat_ws", "initcap", "left", "length", "lower",
    "lpad", "ltrim", "md5", "regexp_like", "regexp_match", "regexp_replace", "repeat", "replace",
    "reverse", "right", "rpad", "rtrim", "split_part", "starts_with", "strpos", "substr", "to_hex",
    "translate", "trim", "upper",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date", "current_time", "date_bin", "date_part", "date_trunc", "extract", "from_unixtime",
    "make_date", "now", "to_char", "to_date", "to_timestamp", "to_unixtime",
];
const SYSTEM_FUNCTIONS: &[&str] = &["arrow_typeof", "coalesce", "nullif", "nvl", "version"];

/// Every GetSqlInfo key a JDBC or ADBC client asks for, built once.
/// Long: a table of keys and values in code, one line each.
pub fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "cclake");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0_i32); // none
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
        b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
        b.append(SqlInfo::FlightSqlServerStatementTimeout, 0_i32);
        b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0_i32);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(SqlInfo::SqlIdentifierCase, 3_i32); // lower case
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlQuotedIdentifierCase, 1_i32); // case sensitive
        b.append(SqlInfo::SqlAllTablesAreSelectable, true);
        b.append(SqlInfo::SqlNullOrdering, 0_i32); // nulls sorted high
        b.append(SqlInfo::SqlKeywords, KEYWORDS);
        b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
        b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
        b.append(SqlInfo::SqlSystemFunctions, SYSTEM_FUNCTIONS);
        b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
        b.append(SqlInfo::SqlSearchStringEscape, "\\");
        b.append(SqlInfo::SqlExtraNameCharacters, "");
        b.append(SqlInfo::SqlSupportsColumnAliasing, true);
        b.append(SqlInfo::SqlNullPlusNullIsNull, true);
        b.append(SqlInfo::SqlSupportsConvert, BTreeMap::<i32, Vec<i32>>::new());
        b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
        b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
        b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
        b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
        b.append(SqlInfo::SqlSupportedGroupBy, 3_i32); // unrelated, beyond select
        b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
        b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
        b.append(SqlInfo::SqlSupportedGrammar, 3_i32); // minimum, core
        b.append(SqlInfo::SqlAnsi92SupportedLevel, 3_i32); // entry, intermediate
        b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
        b.append(SqlInfo::SqlOuterJoinsSupportLevel, 2_i32); // full
        b.append(SqlInfo::SqlSchemaTerm, "schema");
        b.append(SqlInfo::SqlProcedureTerm, "procedure");
        b.append(SqlInfo::SqlCatalogTerm, "catalog");
        b.append(SqlInfo::SqlCatalogAtStart, true);
        b.append(SqlInfo::SqlSchemasSupportedActions, 0_i32);
        b.append(SqlInfo::SqlCatalogsSupportedActions, 0_i32);
        b.append(SqlInfo::SqlSupportedPositionedCommands, 0_i32);
        b.append(SqlInfo::SqlSelectForUpdateSupported, false);
        b.append(SqlInfo::SqlStoredProceduresSupported, false);
        b.append(SqlInfo::SqlSupportedSubqueries, 15_i32); // comparisons, exists, in, quantified
        b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
        b.append(SqlInfo::SqlSupportedUnions, 3_i32); // union, union all
        for key in [
            SqlInfo::SqlMaxBinaryLiteralLength,
            SqlInfo::SqlMaxCharLiteralLength,
            SqlInfo::SqlMaxColumnNameLength,
            SqlInfo::SqlMaxColumnsInGroupBy,
            SqlInfo::SqlMaxColumnsInIndex,
            SqlInfo::SqlMaxColumnsInOrderBy,
            SqlInfo::SqlMaxColumnsInSelect,
            SqlInfo::SqlMaxColumnsInTable,
            SqlInfo::SqlMaxConnections,
            SqlInfo::SqlMaxCursorNameLength,
            SqlInfo::SqlMaxIndexLength,
            SqlInfo::SqlDbSchemaNameLength,
            SqlInfo::SqlMaxProcedureNameLength,
            SqlInfo::SqlMaxCatalogNameLength,
            SqlInfo::SqlMaxRowSize,
            SqlInfo::SqlMaxStatementLength,
            SqlInfo::SqlMaxStatements,
            SqlInfo::SqlMaxTableNameLength,
            SqlInfo::SqlMaxTablesInSelect,
            SqlInfo::SqlMaxUsernameLength,
        ] {
            b.append(key, 0_i64); // no fixed limit
        }
        b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
        b.append(SqlInfo::SqlDefaultTransactionIsolation, 0_i32);
        b.append(SqlInfo::SqlTransactionsSupported, false);
        b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0_i32);
        b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
        b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
        b.append(SqlInfo::SqlSupportedResultSetTypes, 2_i32); // forward only
        b.append(SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified, 0_i32);
        b.append(SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly, 2_i32); // read only
        b.append(SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive, 0_i32);
        b.append(SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive, 0_i32);
        b.append(SqlInfo::SqlBatchUpdatesSupported, false);
        b.append(SqlInfo::SqlSavepointsSupported, false);
        b.append(SqlInfo::SqlNamedParametersSupported, false);
        b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
        b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
        // Every key above is a valid value type; a failure here is a programming error
        // caught by the unit test below.
        b.build().unwrap_or_else(|e| panic!("static SqlInfo does not build: {e}"))
    })
}

fn xdbc(name: &str, data_type: XdbcDataType, column_size: Option<i32>, literal: Option<&str>) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type,
        column_size,
        literal_prefix: literal.map(str::to_string),
        literal_suffix: literal.map(str::to_string),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: literal.is_some(),
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    }
}

/// Every SQL type a cclake query can return, by the name [`sql_type`] gives it.
pub fn xdbc_type_info() -> &'static XdbcTypeInfoData {
    static INFO: OnceLock<XdbcTypeInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = XdbcTypeInfoDataBuilder::new();
        b.append(xdbc("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None));
        b.append(xdbc("TINYINT", XdbcDataType::XdbcTinyint, Some(3), None));
        b.append(xdbc("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), None));
        b.append(xdbc("INTEGER", XdbcDataType::XdbcInteger, Some(10), None));
        b.append(xdbc("BIGINT", XdbcDataType::XdbcBigint, Some(19), None));
        b.append(xdbc("REAL", XdbcDataType::XdbcReal, Some(7), None));
        b.append(xdbc("DOUBLE", XdbcDataType::XdbcDouble, Some(15), None));
        b.append(xdbc("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), None));
        b.append(xdbc("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("'")));
        b.append(xdbc("VARBINARY", XdbcDataType::XdbcVarbinary, None, Some("'")));
        b.append(xdbc("DATE", XdbcDataType::XdbcDate, Some(10), Some("'")));
        b.append(xdbc("TIME", XdbcDataType::XdbcTime, Some(15), Some("'")));
        b.append(xdbc("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some(26), Some("'")));
        b.append(xdbc("TIMESTAMP WITH TIME ZONE", XdbcDataType::XdbcTimestamp, Some(32), Some("'")));
        b.append(xdbc("INTERVAL", XdbcDataType::XdbcInterval, None, Some("'")));
        b.build().unwrap_or_else(|e| panic!("static XdbcTypeInfo does not build: {e}"))
    })
}

/// The SQL name, precision and scale clients are told for an Arrow type.
pub fn sql_type(data_type: &DataType) -> (String, Option<i32>, Option<i32>) {
    let named = |name: &str, precision: Option<i32>| (name.to_string(), precision, None);
    match data_type {
        DataType::Boolean => named("BOOLEAN", Some(1)),
        DataType::Int8 => named("TINYINT", Some(3)),
        DataType::Int16 | DataType::UInt8 => named("SMALLINT", Some(5)),
        DataType::Int32 | DataType::UInt16 => named("INTEGER", Some(10)),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => named("BIGINT", Some(19)),
        DataType::Float16 | DataType::Float32 => named("REAL", Some(7)),
        DataType::Float64 => named("DOUBLE", Some(15)),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            (format!("DECIMAL({p},{s})"), Some(i32::from(*p)), Some(i32::from(*s)))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => named("VARCHAR", None),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            named("VARBINARY", None)
        }
        DataType::Date32 | DataType::Date64 => named("DATE", Some(10)),
        DataType::Time32(_) | DataType::Time64(_) => named("TIME", Some(15)),
        DataType::Timestamp(unit, tz) => {
            let digits = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            let name = if tz.is_some() { "TIMESTAMP WITH TIME ZONE" } else { "TIMESTAMP" };
            (name.to_string(), Some(19 + if digits > 0 { digits + 1 } else { 0 }), Some(digits))
        }
        DataType::Interval(_) | DataType::Duration(_) => named("INTERVAL", None),
        DataType::Dictionary(_, value) => sql_type(value),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) | DataType::ListView(_) => {
            named("ARRAY", None)
        }
        DataType::Struct(_) => named("STRUCT", None),
        DataType::Map(..) => named("MAP", None),
        DataType::Null => named("NULL", None),
        other => (other.to_string().to_uppercase(), None, None),
    }
}

/// The Flight SQL column metadata (`ARROW:FLIGHT:SQL:*`) of a column of `data_type`, as the
/// spec describes it for GetTables' `include_schema` and statement schemas.
pub fn column_metadata(data_type: &DataType) -> HashMap<String, String> {
    let (name, precision, scale) = sql_type(data_type);
    let is_text = matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let mut metadata = HashMap::from([
        ("ARROW:FLIGHT:SQL:TYPE_NAME".to_string(), name),
        ("ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT".to_string(), "0".to_string()),
        ("ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE".to_string(), if is_text { "1" } else { "0" }.to_string()),
        ("ARROW:FLIGHT:SQL:IS_READ_ONLY".to_string(), "1".to_string()),
        ("ARROW:FLIGHT:SQL:IS_SEARCHABLE".to_string(), "1".to_string()),
    ]);
    if let Some(p) = precision {
        metadata.insert("ARROW:FLIGHT:SQL:PRECISION".to_string(), p.to_string());
    }
    if let Some(s) = scale {
        metadata.insert("ARROW:FLIGHT:SQL:SCALE".to_string(), s.to_string());
    }
    metadata
}

/// Result schema of GetPrimaryKeys.
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// Result schema of GetImportedKeys, GetExportedKeys and GetCrossReference.
pub fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_metadata_builds() {
        let _ = sql_info();
        let _ = xdbc_type_info();
    }

    #[test]
    fn every_served_type_has_a_type_name_listed_in_xdbc_type_info() {
        let listed = ["BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "REAL", "DOUBLE", "DECIMAL", "VARCHAR",
            "VARBINARY", "DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "INTERVAL"];
        for t in [
            DataType::Boolean, DataType::Int32, DataType::Int64, DataType::Float64, DataType::Utf8,
            DataType::Date32, DataType::Decimal128(38, 10), DataType::Binary,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Timestamp(TimeUnit::Nanosecond, None),
        ] {
            let (name, _, _) = sql_type(&t);
            let base = name.split('(').next().unwrap_or_default();
            assert!(listed.contains(&base), "{t}: {name}");
        }
        assert_eq!(sql_type(&DataType::Decimal128(10, 2)), ("DECIMAL(10,2)".to_string(), Some(10), Some(2)));
        let tz = column_metadata(&DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(tz["ARROW:FLIGHT:SQL:TYPE_NAME"], "TIMESTAMP WITH TIME ZONE");
        assert_eq!(tz["ARROW:FLIGHT:SQL:SCALE"], "6");
    }
}
