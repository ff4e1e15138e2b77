//! The `options!` macro: turns the option table in `options.rs` into the
//! [`Layer`](super::options::Layer) struct, its merge and the
//! [`OPTIONS`](super::options::OPTIONS) entries that the command line, the
//! environment and the file reader go through.

/// `Some(x)` for a given optional table cell, `None` for an empty one.
macro_rules! optional {
    () => {
        None
    };
    ($value:expr) => {
        Some($value)
    };
}

/// One row per option:
///
/// ```text
/// /// Help text for --help (doc comment lines are joined with spaces)
/// field: Type => "long-name", short 'x', value "VALUE_NAME";
/// ```
///
/// `field` is the [`Layer`](super::options::Layer) field, `Type` a
/// [`Value`](super::values::Value) (it knows its parser and bounds),
/// `short` and `value` are optional (a switch has no value name).
macro_rules! options {
    ($(
        $(#[doc = $help:literal])+
        $field:ident: $ty:ty => $long:literal $(, short $short:literal)? $(, value $value_name:literal)?;
    )*) => {
        /// What one source (command line, environment or file) says;
        /// `None` means "ask the next source".
        #[derive(Debug, Default, Clone)]
        pub(super) struct Layer {
            $(
                #[doc = concat!("`", $long, "`")]
                pub(super) $field: Option<$ty>,
            )*
        }

        impl Layer {
            /// Every field `self` sets, else `lower`'s.
            fn or(self, lower: Layer) -> Layer {
                Layer {
                    $($field: self.$field.or(lower.$field),)*
                }
            }
        }

        /// The options in `--help` order.
        pub(super) const OPTIONS: &[Setting] = &[$(
            Setting {
                long: $long,
                short: optional!($($short)?),
                value_name: optional!($($value_name)?),
                help: concat!($($help),+),
                switch: <$ty as Value>::SWITCH,
                clap: <$ty as Value>::clap,
                set: |layer, text| {
                    layer.$field = Some(<$ty as Value>::parse(text)?);
                    Ok(())
                },
                take: |layer, matches| {
                    layer.$field = <$ty as Value>::from_matches(matches, $long);
                },
                #[cfg(test)]
                example: <$ty as Value>::EXAMPLE,
            },
        )*];
    };
}
