using System.Globalization;
using System.Net;
using ProxySelection.Lab;

namespace ProxySelection.LabTool.Lab;

/// <summary>One round: the home client's goodput and the bytes the CPE received on each uplink meanwhile.</summary>
internal sealed record HybridRound(bool BothPaths, double Mbit, long DslBytes, long LteBytes);

/// <summary>One path against both paths through the same proxies, measured alike (see <see cref="HybridThroughput"/>).</summary>
internal sealed record HybridComparison(IReadOnlyList<HybridRound> Rounds)
{
    public double OnePathMbit => Median(Rounds.Where(r => !r.BothPaths).Select(r => r.Mbit));

    public double BothPathsMbit => Median(Rounds.Where(r => r.BothPaths).Select(r => r.Mbit));

    /// <summary>Median with both paths over median with one path.</summary>
    public double Ratio => BothPathsMbit / OnePathMbit;

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count == 0 ? 0 : sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }
}

/// <summary>
/// Throughput of the hybrid chain, one path against both, in steady state: iperf3 from the home client to the server
/// (data server → home, <c>-R</c>, plain TCP at both ends) through the CPE and the AGG, the first
/// <see cref="OmitSeconds"/> uncounted (connection set-up through both proxies, slow start, the second subflow
/// joining), then the goodput the home client receives. "One path" is the same chain with the CPE's lte endpoint
/// removed, so the MPTCP stretch has only the dsl subflow: both sides pay the same proxies, relays and MPTCP option
/// overhead. Rounds alternate one path and both paths so drifting load on the machine hits both alike; the medians
/// are compared.
/// </summary>
/// <remarks>
/// Why not bytes over time of one download against the shaped rate: TCP over a 50 Mbit/s link carries at most
/// 50 × 1448/1514 ≈ 47.8 Mbit/s of payload (headers count against the rate), so against the nominal rate two paths
/// top out near 1.91×, and a 4.5 s download also counts its set-up and slow start.
/// </remarks>
internal static class HybridThroughput
{
    /// <summary>iperf3's port; the hybrid proxies intercept it besides 80.</summary>
    public const int Port = 5201;

    public const int OmitSeconds = 1;

    /// <summary>
    /// Runs <paramref name="rounds"/> pairs (one path, then both) of <paramref name="seconds"/> counted seconds each;
    /// <paramref name="progress"/> hears each round as it ends. Leaves the second path enabled.
    /// </summary>
    public static async Task<HybridComparison> CompareAsync(HybridChain chain, int rounds, int seconds, Action<HybridRound>? progress,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(chain);
        var results = new List<HybridRound>();
        try
        {
            for (int i = 0; i < rounds; i++)
            {
                foreach (bool both in new[] { false, true })
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    await chain.SetSecondPathAsync(both).ConfigureAwait(false);
                    var round = await RunRoundAsync(chain, both, seconds, cancellationToken).ConfigureAwait(false);
                    results.Add(round);
                    progress?.Invoke(round);
                }
            }
        }
        finally
        {
            await chain.SetSecondPathAsync(true).ConfigureAwait(false);
        }

        return new HybridComparison(results);
    }

    private static async Task<HybridRound> RunRoundAsync(HybridChain chain, bool both, int seconds, CancellationToken cancellationToken)
    {
        // One-shot server per round: it exits after the test, so no state carries over between rounds.
        var server = await LabNetwork.StartIperf3ServerAsync(chain.ServerNs, Port).WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await SettleAsync(chain, cancellationToken).ConfigureAwait(false);
            long dsl = await RxBytesAsync(chain.Cpe, DemoChain.Dsl).ConfigureAwait(false);
            long lte = await RxBytesAsync(chain.Cpe, DemoChain.Lte).ConfigureAwait(false);
            var result = await LabNetwork.Iperf3Async(chain.HomeNs, IPAddress.Parse(HybridChain.Server), Port, seconds, reverse: true,
                omitSeconds: OmitSeconds).WaitAsync(cancellationToken).ConfigureAwait(false);
            return new HybridRound(both, result.BitsPerSecond / 1e6,
                await RxBytesAsync(chain.Cpe, DemoChain.Dsl).ConfigureAwait(false) - dsl,
                await RxBytesAsync(chain.Cpe, DemoChain.Lte).ConfigureAwait(false) - lte);
        }
        finally
        {
            await server.StopAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Waits (at most 3 s) until neither link received anything for 200 ms: the relays may still be sending the last
    /// round's buffered tail, which would count toward this round's link (seen once: 129 kB on lte in a one-path round).
    /// </summary>
    private static async Task SettleAsync(HybridChain chain, CancellationToken cancellationToken)
    {
        long last = -1;
        for (int i = 0; i < 15; i++)
        {
            long now = await RxBytesAsync(chain.Cpe, DemoChain.Dsl).ConfigureAwait(false) + await RxBytesAsync(chain.Cpe, DemoChain.Lte).ConfigureAwait(false);
            if (now == last)
            {
                return;
            }

            last = now;
            await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Bytes <paramref name="device"/> received so far (interface counter, headers included).</summary>
    public static async Task<long> RxBytesAsync(NetNamespace ns, string device)
    {
        ArgumentNullException.ThrowIfNull(ns);
        var text = await ns.CheckAsync("cat", [$"/sys/class/net/{device}/statistics/rx_bytes"]).ConfigureAwait(false);
        return long.Parse(text.Trim(), CultureInfo.InvariantCulture);
    }
}
