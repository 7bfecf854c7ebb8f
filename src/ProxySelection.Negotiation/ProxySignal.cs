namespace ProxySelection.Negotiation;

/// <summary>The MP_PROXY message kinds as the negotiation uses them (values match the wire codes).</summary>
public enum SignalKind : byte
{
    /// <summary>On a prober's SYN: "I am resolving this destination and would hold it".</summary>
    Probe = 1,

    /// <summary>
    /// On a SYN/ACK: the named proxy holds this connection. On a SYN: a holder's upstream leg, which no proxy
    /// intercepts (spec §7.2 step 2, §7.3.3).
    /// </summary>
    Claim = 2,

    /// <summary>On a SYN/ACK answering a probe: release your held SYN untouched, the named proxy acts (spec §7.4).</summary>
    Defer = 3,

    /// <summary>Reserved (spec §5.4); parsed, then treated as absent.</summary>
    Offer = 4,

    /// <summary>On an upgrade proxy's SYN: the MPTCP connection originates at an upgrade proxy (probe among upgraders).</summary>
    Upgrade = 5,
}

/// <summary>
/// A decoded MP_PROXY option that VERIFIED under the operator key. The negotiation never sees an option that
/// failed verification: the adapter turns it into "absent" (design §2 property 5).
/// </summary>
public readonly record struct ProxySignal(SignalKind Kind, byte ProxyId, byte Priority, bool AtCapacity = false);
