namespace ProxySelection.Interception.Netlink;

/// <summary>linux/netlink.h.</summary>
internal static class Netlink
{
    public const int AfNetlink = 16;
    public const int NetlinkNetfilter = 12;
    public const int SolNetlink = 270;
    public const int NetlinkNoEnobufs = 5;
    public const int NetlinkCapAck = 10;
    public const int NetlinkExtAck = 11;

    public const int HeaderLength = 16;
    public const int AttributeHeaderLength = 4;

    public const ushort FlagRequest = 0x1;
    public const ushort FlagMulti = 0x2;
    public const ushort FlagAck = 0x4;

    public const ushort TypeNoop = 1;
    public const ushort TypeError = 2;
    public const ushort TypeDone = 3;
    public const ushort TypeOverrun = 4;

    public const ushort AttributeNested = 0x8000;
    public const ushort AttributeNetByteOrder = 0x4000;
    public const ushort AttributeTypeMask = 0x3FFF;

    public static int Align(int length) => (length + 3) & ~3;
}

/// <summary>linux/netfilter/nfnetlink.h and nfnetlink_queue.h.</summary>
internal static class Nfq
{
    public const int NfgenHeaderLength = 4;
    public const byte NfnetlinkV0 = 0;
    public const int SubsystemQueue = 3;

    public const ushort MsgPacket = (SubsystemQueue << 8) | 0;
    public const ushort MsgVerdict = (SubsystemQueue << 8) | 1;
    public const ushort MsgConfig = (SubsystemQueue << 8) | 2;
    public const ushort MsgVerdictBatch = (SubsystemQueue << 8) | 3;

    // nfqnl_attr_type
    public const ushort AttrPacketHeader = 1;
    public const ushort AttrVerdictHeader = 2;
    public const ushort AttrMark = 3;
    public const ushort AttrTimestamp = 4;
    public const ushort AttrIfIndexInDev = 5;
    public const ushort AttrIfIndexOutDev = 6;
    public const ushort AttrIfIndexPhysInDev = 7;
    public const ushort AttrIfIndexPhysOutDev = 8;
    public const ushort AttrHwAddr = 9;
    public const ushort AttrPayload = 10;
    public const ushort AttrConntrack = 11;
    public const ushort AttrConntrackInfo = 12;
    public const ushort AttrCapLen = 13;
    public const ushort AttrSkbInfo = 14;

    // nfqnl_attr_config
    public const ushort CfgCmd = 1;
    public const ushort CfgParams = 2;
    public const ushort CfgQueueMaxLen = 3;
    public const ushort CfgMask = 4;
    public const ushort CfgFlags = 5;

    /// <summary>struct nfqnl_msg_packet_hdr: __be32 packet_id, __be16 hw_protocol, __u8 hook (packed).</summary>
    public const int PacketHeaderLength = 7;

    /// <summary>struct nfqnl_msg_config_params: __be32 copy_range, __u8 copy_mode (packed).</summary>
    public const int ConfigParamsLength = 5;
}
