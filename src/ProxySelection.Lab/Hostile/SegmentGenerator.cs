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
/// Sends hostile TCP segments from a namespace through a <see cref="RawSender"/>. The sockets are created inside the
/// namespace on a dedicated thread (<see cref="NetNamespace.RunInNamespaceAsync{T}(Func{T})"/>) and the send loop runs on that thread: no await,
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
            using var sender = RawSender.OpenHere();
            return Send(sender, segment, limits, new Random(seed), clock, cancellationToken);
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
            using var sender = RawSender.OpenHere();
            long start = clock.GetTimestamp();
            long sent = 0, failed = 0;
            foreach (var packet in packets)
            {
                if (sender.Send(packet))
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

    private static GeneratorResult Send(RawSender sender, HostileSegment segment, GeneratorLimits limits, Random random, TimeProvider clock,
        CancellationToken cancellationToken)
    {
        var bucket = new TokenBucket(limits.Rate, Math.Max(1, limits.Rate / 20));
        var packet = new byte[segment.PacketLength];
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
                if (sender.Send(packet))
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
}
