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

    /// <summary>MP_CAPABLE SYN (long form): the sender holds a SYN for this destination and acts unless a proxy beyond outranks it.</summary>
    Probe = 1,

    /// <summary>SYN/ACK (short form): the proxy named holds this connection. SYN (long form): a holder's upstream leg, never intercepted.</summary>
    Claim = 2,

    /// <summary>
    /// SYN/ACK answering a Probe or Upgrade (short form): "release your held SYN untouched and do not act; the proxy
    /// named acts for this destination" (spec §5.4, §7.4). Sent by a proxy beyond that outranks the prober, or relayed
    /// by one that learned it from its own probe. A receiver treats it on a SYN as absent (§5.5).
    /// </summary>
    Defer = 3,

    /// <summary>
    /// Reserved for a capacity offer of a later version: not sent in version 1. It parses (so its appearance is
    /// not an error) and a receiver then treats it as absent.
    /// </summary>
    Offer = 4,

    /// <summary>MP_CAPABLE SYN (long form): the MPTCP leg (and probe) of an upgrade proxy for a plain TCP client; MP_JOIN SYN (short form): informational.</summary>
    Upgrade = 5,
}
