namespace ProxySelection.Wire.MpProxy;

/// <summary>
/// The message kind carried in an MP_PROXY option (spec §5.4). The 3-bit wire field holds 1..5; 0, 6 and 7 are
/// unassigned and make the whole option absent. <see cref="Presence"/> is the implicit kind of the 4-byte form,
/// which has no kind field; it never appears in the field itself.
/// </summary>
public enum MpProxyMessage : byte
{
    /// <summary>4-byte presence form: "a P-aware proxy terminated this subflow". Unauthenticated, informational.</summary>
    Presence = 0,

    /// <summary>SYN: the sender holds a SYN for this destination and intends to act if no proxy beyond outranks it.</summary>
    Probe = 1,

    /// <summary>SYN/ACK: the sender holds (or will hold) connections to this destination. SYN: the holder's upstream leg.</summary>
    Claim = 2,

    /// <summary>SYN: a probe by which the sender yields (at capacity, or policy nearest-server).</summary>
    Defer = 3,

    /// <summary>SYN/ACK: the sender takes a connection only because the prober yielded.</summary>
    Offer = 4,

    /// <summary>SYN: the upstream MPTCP leg opened by an upgrade proxy for a plain TCP client.</summary>
    Upgrade = 5,
}
