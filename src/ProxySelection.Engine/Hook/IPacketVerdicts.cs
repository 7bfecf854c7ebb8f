using ProxySelection.Interception.Nfqueue;

namespace ProxySelection.Engine.Hook;

/// <summary>
/// Where the engine's SYN and egress logic answer a queued packet: the only way they reach the kernel. The daemon's
/// implementation is <see cref="NfqueueHook"/>; unit tests record the verdicts (no root).
/// </summary>
public interface IPacketVerdicts
{
    void Accept(uint packetId);

    /// <summary>Accepts with the packet's mark replaced by <paramref name="mark"/> (the intercept mark sends a SYN to TPROXY).</summary>
    void AcceptWithMark(uint packetId, uint mark);

    /// <summary>Accepts <paramref name="packet"/> in place of the queued one (an egress signal added, a probe's MP_CAPABLE taken out).</summary>
    void AcceptWithPayload(uint packetId, ReadOnlySpan<byte> packet, uint? mark = null);

    void Drop(uint packetId);
}

/// <summary>Hands each queued packet to the engine.</summary>
public delegate void QueuedPacketHandler(in QueuedPacket packet);

/// <summary>
/// One queued packet as the engine sees it: what NFQUEUE gives, minus the transport's details. The payload is borrowed
/// from the receive buffer for the handler's call only.
/// </summary>
public readonly ref struct QueuedPacket
{
    public QueuedPacket(uint packetId, uint mark, NetfilterHook hook, uint inDeviceIndex, ReadOnlySpan<byte> payload, long receivedAtMicroseconds = 0,
        uint outDeviceIndex = 0)
    {
        ReceivedAtMicroseconds = receivedAtMicroseconds;
        OutDeviceIndex = outDeviceIndex;
        PacketId = packetId;
        Mark = mark;
        Hook = hook;
        InDeviceIndex = inDeviceIndex;
        Payload = payload;
    }

    public uint PacketId { get; }

    public uint Mark { get; }

    /// <summary><see cref="NetfilterHook.PostRouting"/>: the proxy's own SYN or SYN/ACK (egress); otherwise an arriving one.</summary>
    public NetfilterHook Hook { get; }

    /// <summary>The interface the packet arrived on; 0 for one this host generated.</summary>
    public uint InDeviceIndex { get; }

    /// <summary>The interface the packet leaves by (POSTROUTING), 0 when unknown.</summary>
    public uint OutDeviceIndex { get; }

    /// <summary>When the kernel received the packet (NFQA_TIMESTAMP, µs since the Unix epoch), or 0 when unknown.</summary>
    public long ReceivedAtMicroseconds { get; }

    /// <summary>The IP packet.</summary>
    public ReadOnlySpan<byte> Payload { get; }
}
