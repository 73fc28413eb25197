//! Mapping between Rust row structs and polars columns.
//!
//! Tables are declared once with [`table!`](crate::table) and get their
//! Parquet schema, their conversion to a [`DataFrame`] and their typed
//! read-back from that single declaration, so the writer, the reader and the
//! format documentation cannot drift apart.

use polars::prelude::*;

/// A Rust type that can be stored as one archive column.
///
/// Only a handful of physical types are used (`u32`, `u64`, `i64`, `f64`,
/// `bool`, strings and their nullable forms) so that the archive needs no
/// optional polars dtypes and reads the same in every Parquet consumer.
pub trait ColumnValue: Sized {
    /// Polars data type of the column.
    fn dtype() -> DataType;
    /// Whether the column may hold nulls.
    fn nullable() -> bool;
    /// Builds a named column from row values.
    fn to_column(name: &'static str, values: Vec<Self>) -> Column;
    /// Extracts the values back; `Err` explains a type or null mismatch.
    fn from_column(column: &Column) -> Result<Vec<Self>, String>;
    /// A deterministic value for synthetic rows (tests, benchmarks); nullable
    /// columns yield a null every third row so nulls are exercised too.
    fn example(i: u64) -> Self;
}

fn dtype_mismatch(column: &Column, expected: &DataType) -> String {
    format!(
        "column `{}` has type {}, expected {}",
        column.name(),
        column.dtype(),
        expected
    )
}

macro_rules! numeric_column {
    ($ty:ty, $dtype:expr, $accessor:ident, $example:expr) => {
        impl ColumnValue for $ty {
            fn dtype() -> DataType {
                $dtype
            }
            fn nullable() -> bool {
                false
            }
            fn to_column(name: &'static str, values: Vec<Self>) -> Column {
                Column::new(PlSmallStr::from_static(name), values)
            }
            fn from_column(column: &Column) -> Result<Vec<Self>, String> {
                let ca = column
                    .$accessor()
                    .map_err(|_| dtype_mismatch(column, &$dtype))?;
                if ca.null_count() > 0 {
                    return Err(format!(
                        "column `{}` holds {} nulls but may not be null",
                        column.name(),
                        ca.null_count()
                    ));
                }
                Ok(ca.no_null_iter().collect())
            }
            fn example(i: u64) -> Self {
                let f: fn(u64) -> $ty = $example;
                f(i)
            }
        }

        impl ColumnValue for Option<$ty> {
            fn dtype() -> DataType {
                $dtype
            }
            fn nullable() -> bool {
                true
            }
            fn to_column(name: &'static str, values: Vec<Self>) -> Column {
                Column::new(PlSmallStr::from_static(name), values)
            }
            fn from_column(column: &Column) -> Result<Vec<Self>, String> {
                let ca = column
                    .$accessor()
                    .map_err(|_| dtype_mismatch(column, &$dtype))?;
                Ok(ca.iter().collect())
            }
            fn example(i: u64) -> Self {
                (!i.is_multiple_of(3)).then(|| <$ty as ColumnValue>::example(i))
            }
        }
    };
}

numeric_column!(u32, DataType::UInt32, u32, |i| (i as u32).wrapping_mul(7)
    ^ 0x8000_0001);
numeric_column!(u64, DataType::UInt64, u64, |i| {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
});
numeric_column!(i64, DataType::Int64, i64, |i| (i as i64) * -3 + 1);
numeric_column!(f64, DataType::Float64, f64, |i| i as f64 * 0.25 - 7.5);
numeric_column!(bool, DataType::Boolean, bool, |i| i % 2 == 0);

impl ColumnValue for String {
    fn dtype() -> DataType {
        DataType::String
    }
    fn nullable() -> bool {
        false
    }
    fn to_column(name: &'static str, values: Vec<Self>) -> Column {
        Column::new(PlSmallStr::from_static(name), values)
    }
    fn from_column(column: &Column) -> Result<Vec<Self>, String> {
        let ca = column
            .str()
            .map_err(|_| dtype_mismatch(column, &DataType::String))?;
        ca.iter()
            .map(|v| {
                v.map(str::to_owned)
                    .ok_or_else(|| format!("column `{}` holds a null", column.name()))
            })
            .collect()
    }
    fn example(i: u64) -> Self {
        format!("name-{}-é", i % 97)
    }
}

impl ColumnValue for Option<String> {
    fn dtype() -> DataType {
        DataType::String
    }
    fn nullable() -> bool {
        true
    }
    fn to_column(name: &'static str, values: Vec<Self>) -> Column {
        Column::new(PlSmallStr::from_static(name), values)
    }
    fn from_column(column: &Column) -> Result<Vec<Self>, String> {
        let ca = column
            .str()
            .map_err(|_| dtype_mismatch(column, &DataType::String))?;
        Ok(ca.iter().map(|v| v.map(str::to_owned)).collect())
    }
    fn example(i: u64) -> Self {
        (!i.is_multiple_of(3)).then(|| String::example(i))
    }
}

/// One column of a table's schema, as documented in `docs/archive-format.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub dtype: DataType,
    pub nullable: bool,
    pub doc: &'static str,
}

/// A row type stored as one archive table.
pub trait Table: Sized + Send + 'static {
    /// Directory name of the table inside the archive.
    const NAME: &'static str;
    /// What the table holds, one line.
    const DOC: &'static str;
    /// The columns, in storage order.
    fn columns() -> Vec<ColumnSpec>;
    /// Converts rows into a frame with exactly [`Table::columns`].
    fn to_frame(rows: Vec<Self>) -> DataFrame;
    /// Reads rows back; extra columns (from a newer minor format) are ignored.
    fn from_frame(frame: &DataFrame) -> Result<Vec<Self>, String>;
    /// Deterministic synthetic row `i`, for tests and benchmarks.
    fn example(i: u64) -> Self;
    /// The polars schema of the table.
    fn schema() -> Schema {
        Schema::from_iter(
            Self::columns()
                .into_iter()
                .map(|c| Field::new(PlSmallStr::from_static(c.name), c.dtype)),
        )
    }
}

/// Declares an archive table: a row struct plus its [`Table`] impl.
#[macro_export]
macro_rules! table {
    (
        $(#[doc = $doc:literal])*
        pub struct $name:ident in $table:literal {
            $(
                #[doc = $fdoc:literal]
                pub $field:ident : $ty:ty,
            )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $(
                #[doc = $fdoc]
                pub $field: $ty,
            )+
        }

        impl $crate::Table for $name {
            const NAME: &'static str = $table;
            const DOC: &'static str = concat!($($doc),*);

            fn columns() -> Vec<$crate::column::ColumnSpec> {
                vec![$(
                    $crate::column::ColumnSpec {
                        name: stringify!($field),
                        dtype: <$ty as $crate::ColumnValue>::dtype(),
                        nullable: <$ty as $crate::ColumnValue>::nullable(),
                        doc: $fdoc.trim(),
                    },
                )+]
            }

            fn to_frame(rows: Vec<Self>) -> $crate::polars::prelude::DataFrame {
                let height = rows.len();
                $( let mut $field: Vec<$ty> = Vec::with_capacity(height); )+
                for row in rows {
                    $( $field.push(row.$field); )+
                }
                let columns = vec![$(
                    <$ty as $crate::ColumnValue>::to_column(stringify!($field), $field),
                )+];
                $crate::polars::prelude::DataFrame::new(height, columns)
                    .expect("columns built from one row vector have equal length")
            }

            fn example(i: u64) -> Self {
                $name {
                    $( $field: <$ty as $crate::ColumnValue>::example(i), )+
                }
            }

            fn from_frame(
                frame: &$crate::polars::prelude::DataFrame,
            ) -> Result<Vec<Self>, String> {
                $(
                    let column = frame
                        .column(stringify!($field))
                        .map_err(|_| format!("column `{}` is missing", stringify!($field)))?;
                    let mut $field =
                        <$ty as $crate::ColumnValue>::from_column(column)?.into_iter();
                )+
                let mut rows = Vec::with_capacity(frame.height());
                for _ in 0..frame.height() {
                    rows.push($name {
                        $( $field: $field.next().ok_or("column shorter than frame")?, )+
                    });
                }
                Ok(rows)
            }
        }
    };
}
