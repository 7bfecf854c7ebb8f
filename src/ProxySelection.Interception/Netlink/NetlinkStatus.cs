namespace ProxySelection.Interception.Netlink;

/// <summary>Why a netlink message or attribute did not parse. <see cref="Ok"/> means success.</summary>
public enum NetlinkStatus
{
    Ok = 0,

    /// <summary>Fewer bytes than a header needs.</summary>
    Truncated,

    /// <summary>nlmsg_len smaller than the header or larger than the bytes received.</summary>
    BadMessageLength,

    /// <summary>nla_len smaller than the attribute header or running past its container.</summary>
    BadAttributeLength,

    /// <summary>An attribute whose payload has the wrong size for its type.</summary>
    BadAttributePayload,

    /// <summary>A message of another type than the decoder expects.</summary>
    UnexpectedType,

    /// <summary>A packet message without NFQA_PACKET_HDR.</summary>
    MissingPacketHeader,

    /// <summary>A message without an attribute it must carry (an MPTCP event's token, a family's id or group).</summary>
    MissingAttribute,
}
