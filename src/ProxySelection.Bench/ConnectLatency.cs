using System.Net;
using System.Net.Sockets;
using ProxySelection.Lab;
using ProxySelection.Relay;

namespace ProxySelection.Bench;

/// <summary>Connect times (SYN sent to SYN/ACK back, as connect(2) sees them) of one subject, in microseconds.</summary>
public sealed record ConnectLatencyRun(double P50Us, double P99Us, int Connects, int Failures);

/// <summary>
/// The SYN decision latency as a client sees it: sequential connects from the client namespace, each closed with a
/// reset at once (no TIME_WAIT, no request), timed around connect(2). Through the engine the SYN (and, in explicit mode,
/// the SYN/ACK) crosses the NFQUEUE; compared with the direct path in the same run that is what the decision adds.
/// For proxy-holding every connect after the first to a port is a cache hit. Sockets are created in the namespace
/// beforehand, in one batch, so creating them is not timed.
/// </summary>
internal static class ConnectLatency
{
    public static async Task<ConnectLatencyRun> MeasureAsync(NetNamespace client, IPEndPoint target, bool mptcp, int count, TimeProvider time,
        CancellationToken cancellationToken)
    {
        const int Batch = 100;
        var samples = new List<double>(count);
        int failures = 0;
        while (samples.Count + failures < count)
        {
            int n = Math.Min(Batch, count - samples.Count - failures);
            var sockets = await client.RunInNamespaceAsync(() =>
            {
                var created = new Socket[n];
                for (int i = 0; i < n; i++)
                {
                    created[i] = mptcp ? SocketFactory.CreateMptcp(target.AddressFamily) : new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                }
                return created;
            }).ConfigureAwait(false);
            foreach (var socket in sockets)
            {
                using (socket)
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    timeout.CancelAfter(TimeSpan.FromSeconds(2));
                    long started = time.GetTimestamp();
                    try
                    {
                        await socket.ConnectAsync(target, timeout.Token).ConfigureAwait(false);
                        samples.Add(time.GetElapsedTime(started).TotalMicroseconds);
                    }
                    catch (Exception e) when (e is SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
                    {
                        failures++;
                    }
                    try
                    {
                        // RST: no TIME_WAIT in the client namespace, no request for the server.
                        socket.LingerState = new LingerOption(true, 0);
                    }
                    catch (Exception e) when (e is SocketException or ObjectDisposedException)
                    {
                        // A cancelled connect closed it already.
                    }
                }
            }
        }
        if (samples.Count == 0)
        {
            throw new LabException($"no connect to {target} succeeded ({failures} failed)");
        }
        samples.Sort();
        return new ConnectLatencyRun(Percentile(samples, 50), Percentile(samples, 99), samples.Count, failures);
    }

    internal static double Percentile(IReadOnlyList<double> sorted, double percentile)
    {
        int rank = (int)Math.Ceiling(sorted.Count * percentile / 100);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }
}
