using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Lab.Hostile;

/// <summary>How long and how fast a <see cref="SegmentGenerator"/> run sends: both bounds always hold, whichever comes first.</summary>
/// <param name="Rate">Target segments per second (token bucket, 50 ms of burst: a loaded machine oversleeps).</param>
/// <param name="MaxCount">Never more segments than this.</param>
/// <param name="MaxDuration">Never longer than this.</param>
public sealed record GeneratorLimits(double Rate, long MaxCount, TimeSpan MaxDuration);

/// <summary>What a run did: segments sent, sends the kernel refused (ENOBUFS and the like), time taken, achieved rate.</summary>
public sealed record GeneratorResult(long Sent, long Failed, TimeSpan Elapsed)
{
    public double AchievedPerSecond => Elapsed > TimeSpan.Zero ? Sent / Elapsed.TotalSeconds : 0;

    public override string ToString() => FormattableString.Invariant($"sent {Sent} in {Elapsed.TotalSeconds:F2} s = {AchievedPerSecond:F0}/s, {Failed} refused");
}

/// <summary>
/// Sends hostile TCP segments from a namespace through a raw socket (IPPROTO_RAW: the kernel takes our IP header as is,
/// spoofed source included, and routes by the destination). The socket is created inside the namespace on a dedicated
/// thread (<see cref="NetNamespace.RunInNamespaceAsync{T}(Func{T})"/>) and the send loop runs on that thread: no await,
/// no pool thread in another namespace, pacing by a token bucket on <see cref="TimeProvider"/>.
/// </summary>
public static class SegmentGenerator
{
    /// <summary>
    /// Draws segments from <paramref name="segment"/> and sends them at <see cref="GeneratorLimits.Rate"/> until
    /// <see cref="GeneratorLimits.MaxCount"/>, <see cref="GeneratorLimits.MaxDuration"/> or cancellation. Seeded: the same
    /// seed sends the same segments.
    /// </summary>
    public static Task<GeneratorResult> RunAsync(NetNamespace ns, HostileSegment segment, GeneratorLimits limits, int seed = 1,
        TimeProvider? time = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(segment);
        ArgumentNullException.ThrowIfNull(limits);
        var clock = time ?? TimeProvider.System;
        return ns.RunInNamespaceAsync(() =>
        {
            using var socket = OpenRaw(segment.IsIPv6);
            return Send(socket, segment, limits, new Random(seed), clock, cancellationToken);
        });
    }

    /// <summary>Sends prepared packets once each, in order (single segments: a duplicate, a RST for a held flow).</summary>
    public static Task<GeneratorResult> SendAsync(NetNamespace ns, IReadOnlyList<byte[]> packets, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(packets);
        var clock = time ?? TimeProvider.System;
        return ns.RunInNamespaceAsync(() =>
        {
            long start = clock.GetTimestamp();
            long sent = 0, failed = 0;
            foreach (var packet in packets)
            {
                bool v6 = (packet[0] >> 4) == 6;
                using var socket = OpenRaw(v6);
                var address = Destination(v6);
                if (TrySend(socket, packet, address))
                {
                    sent++;
                }
                else
                {
                    failed++;
                }
            }

            return new GeneratorResult(sent, failed, clock.GetElapsedTime(start));
        });
    }

    private static GeneratorResult Send(Socket socket, HostileSegment segment, GeneratorLimits limits, Random random, TimeProvider clock,
        CancellationToken cancellationToken)
    {
        var bucket = new TokenBucket(limits.Rate, Math.Max(1, limits.Rate / 20));
        var packet = new byte[segment.PacketLength];
        var address = Destination(segment.IsIPv6);
        long start = clock.GetTimestamp();
        long sent = 0, failed = 0;
        while (sent + failed < limits.MaxCount && !cancellationToken.IsCancellationRequested)
        {
            var elapsed = clock.GetElapsedTime(start);
            if (elapsed >= limits.MaxDuration)
            {
                break;
            }

            int due = bucket.Take(elapsed, (int)Math.Min(int.MaxValue, limits.MaxCount - sent - failed));
            if (due == 0)
            {
                // Sleep granularity is 1 ms or worse under load: the bucket's 50 ms burst makes up for it.
                Thread.Sleep(bucket.UntilNext() > TimeSpan.FromMilliseconds(1) ? 1 : 0);
                continue;
            }

            for (int i = 0; i < due; i++)
            {
                segment.Write(packet, random);
                if (TrySend(socket, packet, address))
                {
                    sent++;
                }
                else
                {
                    failed++;
                }
            }
        }

        return new GeneratorResult(sent, failed, clock.GetElapsedTime(start));
    }

    private static Socket OpenRaw(bool v6) =>
        // IPPROTO_RAW implies IP_HDRINCL (IPv4) and hdrincl on IPv6 as well (Linux af_inet6.c): the packet goes out as written.
        new(v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Raw, ProtocolType.Raw);

    private static SocketAddress Destination(bool v6) =>
        new IPEndPoint(v6 ? IPAddress.IPv6Any : IPAddress.Any, 0).Serialize();

    /// <summary>Sets the sockaddr to the packet's own destination (the kernel routes by it) and sends.</summary>
    private static bool TrySend(Socket socket, byte[] packet, SocketAddress address)
    {
        var buffer = address.Buffer.Span;
        if ((packet[0] >> 4) == 6)
        {
            packet.AsSpan(24, 16).CopyTo(buffer[8..]); // sockaddr_in6.sin6_addr
        }
        else
        {
            packet.AsSpan(16, 4).CopyTo(buffer[4..]); // sockaddr_in.sin_addr
        }

        try
        {
            return socket.SendTo(packet, SocketFlags.None, address) == packet.Length;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
