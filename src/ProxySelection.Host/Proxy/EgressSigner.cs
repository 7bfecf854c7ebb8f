using System.Collections.Concurrent;
using System.Net;
using ProxySelection.Negotiation;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Host.Proxy;

/// <summary>
/// The egress hook's side: the MP_PROXY options the proxy's own SYNs (probes) and SYN/ACKs (claims to intercepted
/// clients) must carry, keyed by what the hook can see in the packet. The kernel writes those segments; the hook adds
/// the signed option (spec §5.1: the 16-byte form on a SYN, the 8-byte form on a SYN/ACK).
/// </summary>
internal sealed class EgressSigner(MpProxyKeyRing ring)
{
    // Room for the largest option growth (40 bytes of options at most) on top of the packet.
    private const int Growth = TcpHeader.MaxOptionsLength;

    private readonly ConcurrentDictionary<(ushort LocalPort, IPEndPoint Destination), ProxySignal> _synSignals = new();
    private readonly ConcurrentDictionary<FlowEndPoints, ProxySignal> _claims = new();

    /// <summary>The probe socket bound to <paramref name="localPort"/> will send its SYN to <paramref name="destination"/> carrying <paramref name="signal"/>.</summary>
    public void ExpectSyn(ushort localPort, IPEndPoint destination, ProxySignal signal) => _synSignals[(localPort, destination)] = signal;

    public void ForgetSyn(ushort localPort, IPEndPoint destination) => _synSignals.TryRemove((localPort, destination), out _);

    /// <summary>The SYN/ACK answering the intercepted <paramref name="flow"/> carries <paramref name="claim"/> (kept for retransmissions until <see cref="ForgetClaim"/>).</summary>
    public void ExpectSynAck(FlowEndPoints flow, ProxySignal claim) => _claims[flow] = claim;

    public void ForgetClaim(FlowEndPoints flow) => _claims.TryRemove(flow, out _);

    public int Pending => _synSignals.Count + _claims.Count;

    /// <summary>
    /// Writes the packet with its MP_PROXY into <paramref name="rewritten"/> (a new array) when one is due; false when
    /// the packet goes out as it is (nothing due, not parsed, or no option room left).
    /// </summary>
    public bool TryRewrite(ReadOnlySpan<byte> packet, out byte[] rewritten, out int length, out bool isSynAck)
    {
        rewritten = [];
        length = 0;
        isSynAck = false;
        if (TcpPacket.TryParse(packet, out var parsed) != WireError.None || (parsed.Tcp.Flags & TcpFlags.Syn) == 0)
        {
            return false;
        }

        var ip = parsed.Ip;
        var tcp = parsed.Tcp;
        var source = new IPEndPoint(new IPAddress(ip.SourceAddress), tcp.SourcePort);
        var destination = new IPEndPoint(new IPAddress(ip.DestinationAddress), tcp.DestinationPort);
        isSynAck = (tcp.Flags & TcpFlags.Ack) != 0;
        ProxySignal signal;
        MpProxyFlow flow;
        if (isSynAck)
        {
            if (!_claims.TryGetValue(new FlowEndPoints(destination, source), out signal))
            {
                return false;
            }

            // The flow as its SYN named it: the client initiated; its ISN is what this SYN/ACK acknowledges minus one.
            flow = MpProxyFlow.ForSyn(ip.DestinationAddress, ip.SourceAddress, tcp.DestinationPort, tcp.SourcePort, tcp.AcknowledgmentNumber - 1)
                .WithSynAck(tcp.SequenceNumber);
        }
        else
        {
            if (!_synSignals.TryGetValue((tcp.SourcePort, destination), out signal))
            {
                return false;
            }

            flow = MpProxyFlow.ForSyn(ip.SourceAddress, ip.DestinationAddress, tcp.SourcePort, tcp.DestinationPort, tcp.SequenceNumber);
        }

        Span<byte> option = stackalloc byte[TcpHeader.MaxOptionsLength];
        int optionLength = SignalCodec.Write(option, signal, ring, flow);
        var buffer = new byte[packet.Length + Growth];
        packet.CopyTo(buffer);
        // Recompute: cheap on a SYN, and right whatever state the checksum field was queued in.
        var error = OptionRewriter.TryInsert(buffer, packet.Length, option[..optionLength], out length, ChecksumUpdate.Recompute);
        if (error != WireError.None)
        {
            return false;
        }

        rewritten = buffer;
        return true;
    }
}

/// <summary>A TCP flow by its two endpoints: the initiator (client) and the responder (the original destination).</summary>
internal readonly record struct FlowEndPoints(IPEndPoint Client, IPEndPoint Destination);
