//! The vocabulary of flows: designations, requirements and actions, each a closed set of values
//! as authentik spells them.

use crate::db::text_enum::text_enum;

text_enum!(
    /// What a flow is for.
    Designation {
        Authentication => "authentication",
        Authorization => "authorization",
        Invalidation => "invalidation",
        Enrollment => "enrollment",
        Unenrollment => "unenrollment",
        Recovery => "recovery",
        StageConfiguration => "stage_configuration",
    }
);

text_enum!(
    /// Who may run a flow.
    AuthenticationRequirement {
        None => "none",
        RequireAuthenticated => "require_authenticated",
        RequireUnauthenticated => "require_unauthenticated",
        RequireSuperuser => "require_superuser",
    }
);

text_enum!(
    /// What happens when a flow denies access.
    DeniedAction {
        MessageContinue => "message_continue",
        Message => "message",
        Continue => "continue",
    }
);

text_enum!(
    /// How the executor answers an invalid response to a challenge.
    InvalidResponseAction {
        Retry => "retry",
        Restart => "restart",
        RestartWithContext => "restart_with_context",
    }
);

text_enum!(
    /// How the flow page is laid out.
    Layout {
        Stacked => "stacked",
        ContentLeft => "content_left",
        ContentRight => "content_right",
        SidebarLeft => "sidebar_left",
        SidebarRight => "sidebar_right",
        SidebarLeftFrameBackground => "sidebar_left_frame_background",
        SidebarRightFrameBackground => "sidebar_right_frame_background",
    }
);

text_enum!(
    /// How the results of several policies combine (kept for compatibility; Gatehouse has no
    /// policies yet).
    PolicyEngineMode {
        All => "all",
        Any => "any",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_unknown_values_are_refused() {
        for value in Designation::ALL {
            assert_eq!(Designation::parse(value.as_str()), Some(*value));
        }
        assert_eq!(AuthenticationRequirement::parse("require_superuser"), Some(AuthenticationRequirement::RequireSuperuser));
        assert_eq!(Designation::parse("Authentication"), None);
        assert!(InvalidResponseAction::choices().contains("restart_with_context"));
    }
}
