using System.Collections.Concurrent;
using System.Net;
using ProxySelection.Negotiation;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine;

/// <summary>What the egress hook did with one of the proxy's own segments.</summary>
public enum EgressRewrite
{
    /// <summary>No signal due (or not a parsable SYN): the packet goes out as it is.</summary>
    Untouched,

    /// <summary>A signal was due but the SYN had no option room left: it goes out as it is (fail open).</summary>
    NoRoom,

    /// <summary>A probe's SYN got its Probe or Upgrade.</summary>
    Probe,

    /// <summary>A SYN/ACK to an intercepted client got its Claim (or a probe answer its Defer).</summary>
    SynAck,

    /// <summary>A holder's upstream leg got its Claim or Upgrade (spec §7.3.3).</summary>
    Upstream,

    /// <summary>
    /// The packet came in on an interface (forwarded, not this host's own): it goes out as it is, whatever is due for its
    /// destination. The egress mark bit may be the operator's own policy routing on forwarded traffic.
    /// </summary>
    Forwarded,
}

/// <summary>
/// The egress hook's side: the MP_PROXY options the proxy's own SYNs (probes, upstream legs) and SYN/ACKs (claims to
/// intercepted clients) must carry, keyed by what the hook can see in the packet. The kernel writes those segments;
/// the hook adds the signed option (spec §5.1: the 16-byte form on a SYN, the 8-byte form on a SYN/ACK).
/// </summary>
public sealed class EgressSigner(MpProxyKeyRing ring)
{
    // Room for the largest option growth (40 bytes of options at most) on top of the packet.
    private const int Growth = TcpHeader.MaxOptionsLength;

    private readonly ConcurrentDictionary<(ushort LocalPort, IPEndPoint Destination), ProxySignal> _synSignals = new();
    private readonly ConcurrentDictionary<FlowEndPoints, ProxySignal> _claims = new();

    // Upstream legs connect from a port the kernel picks at connect(2), so they are known by destination only: every
    // marked SYN to it that is neither a probe nor a join gets the signal while at least one leg is connecting.
    private readonly Lock _upstreamLock = new();
    private readonly Dictionary<IPEndPoint, (ProxySignal Signal, int Legs)> _upstream = [];

    /// <summary>The probe socket bound to <paramref name="localPort"/> will send its SYN to <paramref name="destination"/> carrying <paramref name="signal"/>.</summary>
    public void ExpectSyn(ushort localPort, IPEndPoint destination, ProxySignal signal) => _synSignals[(localPort, destination)] = signal;

    public void ForgetSyn(ushort localPort, IPEndPoint destination) => _synSignals.TryRemove((localPort, destination), out _);

    /// <summary>The SYN/ACK answering the intercepted <paramref name="flow"/> carries <paramref name="claim"/> (kept for retransmissions until <see cref="ForgetClaim"/>).</summary>
    public void ExpectSynAck(FlowEndPoints flow, ProxySignal claim) => _claims[flow] = claim;

    public void ForgetClaim(FlowEndPoints flow) => _claims.TryRemove(flow, out _);

    /// <summary>
    /// An upstream leg to <paramref name="destination"/> is about to connect: its SYN (and retransmissions) carry
    /// <paramref name="signal"/> until the matching <see cref="ForgetUpstreamSyn"/>.
    /// </summary>
    public void ExpectUpstreamSyn(IPEndPoint destination, ProxySignal signal)
    {
        lock (_upstreamLock)
        {
            int legs = _upstream.TryGetValue(destination, out var known) ? known.Legs : 0;
            _upstream[destination] = (signal, legs + 1);
        }
    }

    public void ForgetUpstreamSyn(IPEndPoint destination)
    {
        lock (_upstreamLock)
        {
            if (!_upstream.TryGetValue(destination, out var known))
            {
                return;
            }

            if (known.Legs <= 1)
            {
                _upstream.Remove(destination);
            }
            else
            {
                _upstream[destination] = (known.Signal, known.Legs - 1);
            }
        }
    }

    public int Pending
    {
        get
        {
            lock (_upstreamLock)
            {
                return _synSignals.Count + _claims.Count + _upstream.Count;
            }
        }
    }

    private bool TryUpstreamSignal(IPEndPoint destination, out ProxySignal signal)
    {
        lock (_upstreamLock)
        {
            bool found = _upstream.TryGetValue(destination, out var known);
            signal = known.Signal;
            return found;
        }
    }

    /// <summary>
    /// Writes the packet with its MP_PROXY into <paramref name="rewritten"/> (a new array) when one is due; otherwise
    /// the packet goes out as it is (nothing due, not parsed: <see cref="EgressRewrite.Untouched"/>; no option room left:
    /// <see cref="EgressRewrite.NoRoom"/>).
    /// </summary>
    public EgressRewrite Rewrite(ReadOnlySpan<byte> packet, out byte[] rewritten, out int length) => Rewrite(packet, 0, out rewritten, out length);

    /// <summary>
    /// As <see cref="Rewrite(ReadOnlySpan{byte}, out byte[], out int)"/> for a packet the hook saw arrive on interface
    /// <paramref name="inDeviceIndex"/> (0: generated by this host). Only this host's own segments are ever signed: an
    /// upstream leg is matched by its destination alone (the kernel picks its port at connect), so a forwarded SYN to
    /// the same destination carrying the mark bit would otherwise get this proxy's Claim.
    /// </summary>
    public EgressRewrite Rewrite(ReadOnlySpan<byte> packet, uint inDeviceIndex, out byte[] rewritten, out int length)
    {
        if (inDeviceIndex != 0)
        {
            rewritten = [];
            length = 0;
            return EgressRewrite.Forwarded;
        }

        rewritten = [];
        length = 0;
        if (TcpPacket.TryParse(packet, out var parsed) != WireError.None || (parsed.Tcp.Flags & TcpFlags.Syn) == 0)
        {
            return EgressRewrite.Untouched;
        }

        var ip = parsed.Ip;
        var tcp = parsed.Tcp;
        var source = new IPEndPoint(new IPAddress(ip.SourceAddress), tcp.SourcePort);
        var destination = new IPEndPoint(new IPAddress(ip.DestinationAddress), tcp.DestinationPort);
        var kind = (tcp.Flags & TcpFlags.Ack) != 0 ? EgressRewrite.SynAck : EgressRewrite.Probe;
        ProxySignal signal;
        MpProxyFlow flow;
        if (kind == EgressRewrite.SynAck)
        {
            if (!_claims.TryGetValue(new FlowEndPoints(destination, source), out signal))
            {
                return EgressRewrite.Untouched;
            }

            // The flow as its SYN named it: the client initiated; its ISN is what this SYN/ACK acknowledges minus one.
            flow = MpProxyFlow.ForSyn(ip.DestinationAddress, ip.SourceAddress, tcp.DestinationPort, tcp.SourcePort, tcp.AcknowledgmentNumber - 1)
                .WithSynAck(tcp.SequenceNumber);
        }
        else
        {
            if (!_synSignals.TryGetValue((tcp.SourcePort, destination), out signal))
            {
                // A join has no room for the long form (8 bytes left) and proxies steer joins by token alone (§7.8).
                if (IsJoin(tcp.Options) || !TryUpstreamSignal(destination, out signal))
                {
                    return EgressRewrite.Untouched;
                }

                kind = EgressRewrite.Upstream;
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
            return error == WireError.OptionSpaceExceeded ? EgressRewrite.NoRoom : EgressRewrite.Untouched;
        }

        rewritten = buffer;
        return kind;
    }

    private static bool IsJoin(ReadOnlySpan<byte> options)
    {
        foreach (var option in new TcpOptionReader(options))
        {
            if (option.Kind == TcpOptionKind.Mptcp && MptcpOption.TryPeekSubtype(option.Slice(options), out var subtype) == WireError.None
                && subtype == MptcpSubtype.MpJoin)
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>A TCP flow by its two endpoints: the initiator (client) and the responder (the original destination).</summary>
public readonly record struct FlowEndPoints(IPEndPoint Client, IPEndPoint Destination);
