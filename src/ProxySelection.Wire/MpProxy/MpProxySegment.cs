namespace ProxySelection.Wire.MpProxy;

/// <summary>The segment types of spec §5.1, each of which carries exactly one MP_PROXY form.</summary>
public enum MpProxySegment
{
    /// <summary>A SYN without an MPTCP option (a holder's upstream leg): long form, Claim.</summary>
    TcpSyn,

    /// <summary>An MP_CAPABLE SYN: long form, Probe, Upgrade or Claim.</summary>
    MpCapableSyn,

    /// <summary>A SYN/ACK that is not an MP_JOIN SYN/ACK (with or without MP_CAPABLE): short form, Claim or Defer.</summary>
    SynAck,

    /// <summary>An MP_JOIN SYN: short form, Upgrade.</summary>
    JoinSyn,

    /// <summary>An MP_JOIN SYN/ACK: presence form.</summary>
    JoinSynAck,
}
