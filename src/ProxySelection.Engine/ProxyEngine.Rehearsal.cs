using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Engine.Hook;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Wire;

namespace ProxySelection.Engine;

/// <summary>
/// Issue 13, cold start: after <see cref="Warmup"/> a fresh daemon's first SYN still spent 50-300 ms on the hook thread
/// (busy 2 vCPUs; an strace shows the runtime's W^X code mappings one after another between the SYN's receive and its
/// decision): generic instantiations over the engine's structs, call-site stubs and the first socket's set-up, none of
/// which PrepareMethod reaches. The SYN's hold counts from its arrival, so it was released (ProbeTimedOut) where the
/// hundredth is intercepted. A throwaway engine with the same options now decides synthetic SYNs end to end first.
/// </summary>
public sealed partial class ProxyEngine
{
    private static readonly TimeSpan RehearsalLimit = TimeSpan.FromSeconds(2);

    /// <summary>
    /// A throwaway engine (this one's options, no kernel edge: verdicts go nowhere, no listener is opened, events go to a
    /// null stream, metrics and spans to names no exporter reads) takes a cache-miss MP_CAPABLE SYN toward a loopback TCP listener through the hold, a real probe and the
    /// intercept; then the intercepted flow's SYN/ACK through the egress signer, a cache-hit SYN, a foreign join and a RST.
    /// Runs before the queue is bound and the rules are in, so none of its packets meets them. Never fails the start.
    /// </summary>
    /// <returns>How long it took; <see langword="null"/> when it could not finish (it then only compiled part of the path).</returns>
    private static async Task<TimeSpan?> RehearseAsync(ProxyEngineOptions options, TimeProvider time, CancellationToken cancellationToken)
    {
        var watch = Stopwatch.StartNew();
        try
        {
            using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            server.Listen(8);
            var destination = (IPEndPoint)server.LocalEndPoint!;
            using var events = new JsonLinesEventSink(Stream.Null);
            var rehearsal = options with
            {
                Ports = [(ushort)destination.Port],
                Warmup = false,
                Events = events,
                Socks = null,
                KernelFastPath = false,
                KernelSigning = false,
                Rehearsal = true,
            };
            await using var engine = new ProxyEngine(rehearsal, time, NullLogger.Instance, new NoVerdicts(), probes: null, ensureListener: static _ => { });
            byte[] loopback = [127, 0, 0, 1];
            var capable = Segment(loopback, 40001, loopback, (ushort)destination.Port, TcpFlags.Syn, [30, 4, 0x01, 0x01]);
            engine.OnPacket(new QueuedPacket(1, 0, NetfilterHook.PreRouting, 1, capable));
            var key = Negotiation.DestinationKey.From(destination);
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            limit.CancelAfter(RehearsalLimit);
            while (!engine.Negotiator.Cache.TryGet(key, out _))
            {
                await Task.Delay(5, limit.Token).ConfigureAwait(false);
            }

            // The intercepted flow's SYN/ACK (MP_CAPABLE with the listener's key) on the egress hook: its Claim is signed.
            var synAck = Segment(loopback, (ushort)destination.Port, loopback, 40001, TcpFlags.Syn | TcpFlags.Ack, [30, 12, 0x01, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
            engine.OnPacket(new QueuedPacket(2, options.Negotiation.Mode == Negotiation.SignalingMode.Explicit ? RulesetOptions(options).EgressMark : 0,
                NetfilterHook.PostRouting, 0, synAck, outDeviceIndex: 1));
            engine.OnPacket(new QueuedPacket(3, 0, NetfilterHook.PreRouting, 1,
                Segment(loopback, 40002, loopback, (ushort)destination.Port, TcpFlags.Syn, [30, 4, 0x01, 0x01])));
            engine.OnPacket(new QueuedPacket(4, 0, NetfilterHook.PreRouting, 1,
                Segment(loopback, 40003, loopback, (ushort)destination.Port, TcpFlags.Syn, [30, 12, 0x10, 0x00, 0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0, 1])));
            engine.OnPacket(new QueuedPacket(5, 0, NetfilterHook.PreRouting, 1,
                Segment(loopback, 40002, loopback, (ushort)destination.Port, TcpFlags.Rst, [])));
            return watch.Elapsed;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ArgumentException or InvalidOperationException or IOException)
        {
            return null;
        }
    }

    /// <summary>An IPv4 TCP segment with <paramref name="options"/> (a multiple of 4 bytes) and both checksums.</summary>
    private static byte[] Segment(byte[] source, ushort sourcePort, byte[] destination, ushort destinationPort, TcpFlags flags, byte[] options)
    {
        int tcpLength = 20 + options.Length;
        var packet = new byte[20 + tcpLength];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[6] = 0x40; // DF
        packet[8] = 64;
        packet[9] = 6;
        source.CopyTo(packet, 12);
        destination.CopyTo(packet, 16);
        var tcp = packet.AsSpan(20);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], 0x01020304u + sourcePort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], (flags & TcpFlags.Ack) != 0 ? 0x01020305u + destinationPort : 0);
        tcp[12] = (byte)(tcpLength / 4 << 4);
        tcp[13] = (byte)flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 64240);
        options.CopyTo(tcp[20..]);
        return InternetChecksum.TryFillChecksums(packet) == WireError.None ? packet : throw new InvalidOperationException("checksum");
    }

    /// <summary>The rehearsal's verdicts go nowhere.</summary>
    private sealed class NoVerdicts : IPacketVerdicts
    {
        public void Accept(uint packetId)
        {
        }

        public void AcceptWithMark(uint packetId, uint mark)
        {
        }

        public void AcceptWithPayload(uint packetId, ReadOnlySpan<byte> packet, uint? mark = null)
        {
        }

        public void Drop(uint packetId)
        {
        }
    }
}
