//! The vocabulary of tasks: their states and aggregated statuses, as authentik spells them.

use crate::db::text_enum::text_enum;

text_enum!(
    /// Where a task is in its life, in authentik's order.
    TaskState {
        Queued => "queued",
        Consumed => "consumed",
        Preprocess => "preprocess",
        Running => "running",
        Postprocess => "postprocess",
        Rejected => "rejected",
        Done => "done",
    }
);

text_enum!(
    /// A task's state, or, once it is done, the worst level it logged (`info`, `warning` or
    /// `error`; `done` when it logged nothing of its own).
    AggregatedStatus {
        Queued => "queued",
        Consumed => "consumed",
        Preprocess => "preprocess",
        Running => "running",
        Postprocess => "postprocess",
        Rejected => "rejected",
        Done => "done",
        Info => "info",
        Warning => "warning",
        Error => "error",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for value in TaskState::ALL {
            assert_eq!(TaskState::parse(value.as_str()), Some(*value));
            assert!(AggregatedStatus::parse(value.as_str()).is_some(), "every state is also a status");
        }
        for value in AggregatedStatus::ALL {
            assert_eq!(AggregatedStatus::parse(value.as_str()), Some(*value));
        }
        assert_eq!(TaskState::parse("warning"), None);
    }
}
