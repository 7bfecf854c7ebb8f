namespace ProxySelection.Wire.MpProxy;

/// <summary>
/// Outcome of reading an MP_PROXY option. Anything but <see cref="Ok"/> means the segment is treated as carrying
/// no MP_PROXY at all (spec §5.6): unknown values are never guessed at.
/// </summary>
public enum MpProxyStatus
{
    Ok = 0,

    /// <summary>No MP_PROXY option in the option list searched.</summary>
    NotPresent,

    /// <summary>The buffer is shorter than the option's length byte says, or shorter than 4 bytes.</summary>
    Truncated,

    /// <summary>The option kind is not 30 (MPTCP).</summary>
    NotMptcp,

    /// <summary>An MPTCP option of another subtype than 0xF.</summary>
    NotMpProxy,

    /// <summary>Subtype 0xF but a length other than 4, 8 or 16.</summary>
    BadLength,

    /// <summary>Subtype 0xF with a version nibble other than 1.</summary>
    UnknownVersion,

    /// <summary>Subtype 0xF, version 1, but another private experiment's identifier.</summary>
    UnknownExperiment,

    /// <summary>Message kind 0, 6 or 7 in the short or long form.</summary>
    UnknownMessage,

    /// <summary>The P flag is clear: reserved for end-host signals in a later version.</summary>
    NotFromProxy,

    /// <summary>More than one MP_PROXY in one segment: ambiguous, so none counts.</summary>
    Duplicate,

    /// <summary>The TCP option list itself is malformed (length byte 0 or 1, or runs past the end).</summary>
    MalformedOptionList,
}
