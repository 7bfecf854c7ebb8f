using ProxySelection.Interception.Netlink;

namespace ProxySelection.Interception.Nfqueue;

/// <summary>
/// A queued packet as the kernel described it (NFQNL_MSG_PACKET). Spans point into the receive buffer and are valid
/// only during the callback that received them: copy what must outlive it.
/// </summary>
public readonly ref struct NfqueuePacket
{
    /// <summary>AF_INET (2) or AF_INET6 (10): the nfgenmsg family.</summary>
    public byte Family { get; init; }

    public ushort QueueNumber { get; init; }

    /// <summary>The id a verdict names.</summary>
    public uint PacketId { get; init; }

    /// <summary>Link-layer protocol (0x0800, 0x86DD).</summary>
    public ushort HardwareProtocol { get; init; }

    public NetfilterHook Hook { get; init; }

    /// <summary>skb->mark when non-zero (the kernel omits NFQA_MARK for 0).</summary>
    public uint Mark { get; init; }

    public uint InDeviceIndex { get; init; }

    public uint OutDeviceIndex { get; init; }

    /// <summary>The network-layer packet (IP header first), at most the configured copy range.</summary>
    public ReadOnlySpan<byte> Payload { get; init; }

    /// <summary>The packet's full length (NFQA_CAP_LEN when the copy was cut, else the payload length).</summary>
    public int OriginalLength { get; init; }

    public NfqueueSkbInfo SkbInfo { get; init; }

    /// <summary>True when the kernel attached NFQA_CT (flag <see cref="NfqueueConfigFlags.Conntrack"/>, tracked packet).</summary>
    public bool HasConntrack => !Conntrack.IsEmpty;

    /// <summary>The nested CTA_* attributes of NFQA_CT, undecoded.</summary>
    public ReadOnlySpan<byte> Conntrack { get; init; }

    /// <summary>NFQA_CT_INFO (enum ip_conntrack_info) when present, else null.</summary>
    public uint? ConntrackInfo { get; init; }

    /// <summary>
    /// NFQA_TIMESTAMP: when the packet was received, in microseconds since the Unix epoch (CLOCK_REALTIME), or 0 when the
    /// kernel attached none (it stamps received packets only while some socket asked for timestamps: see
    /// <see cref="NfqueueClient.EnableReceiveTimestamps"/>). Its age is the time the packet waited before the callback.
    /// </summary>
    public long TimestampMicroseconds { get; init; }

    /// <summary>True when the copy holds the whole packet.</summary>
    public bool IsComplete => OriginalLength == Payload.Length;

    /// <summary>A heap copy for a packet held beyond the callback (a SYN waiting for a probe); allocates.</summary>
    public NfqueuePacketCopy Copy() =>
        new(Family, QueueNumber, PacketId, Hook, Mark, InDeviceIndex, OutDeviceIndex, Payload.ToArray(), OriginalLength);
}

/// <summary>An owned copy of a queued packet (see <see cref="NfqueuePacket.Copy"/>). The payload array is the caller's.</summary>
public sealed record NfqueuePacketCopy(
    byte Family, ushort QueueNumber, uint PacketId, NetfilterHook Hook, uint Mark, uint InDeviceIndex, uint OutDeviceIndex,
    byte[] Payload, int OriginalLength);
