using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Relay;

namespace ProxySelection.IntegrationTests.Relay;

/// <summary>
/// The upstream connector against a real server namespace: its per-destination circuit breaker driven by a fake
/// clock, the bound on how many destinations keep one, and local failures kept apart from the server's.
/// </summary>
[TestFixture]
public sealed class UpstreamConnectorTests
{
    private static readonly TimeSpan Timeout = RelayLab.Timeout;
    private static readonly TimeSpan BreakDuration = TimeSpan.FromSeconds(30);

    private static UpstreamConnectorOptions BreakerAfterTwoFailures(int maxBreakers = 4096) => new()
    {
        BreakerMinimumThroughput = 2,
        BreakerFailureRatio = 0.5,
        BreakerSamplingDuration = TimeSpan.FromMinutes(1),
        BreakerBreakDuration = BreakDuration,
        MaxBreakers = maxBreakers,
    };

    private static async Task<UpstreamConnectStatus> ConnectAsync(UpstreamConnector connector, IPEndPoint destination)
    {
        var result = await connector.ConnectAsync(destination, TransportProtocol.Tcp).AsTask().WaitAsync(Timeout);
        result.Socket?.Dispose();
        return result.Status;
    }

    [Test]
    public async Task ConnectAsync_CircuitOpenedByFailures_SendsNoSynUntilTheBreakEndsThenLetsAProbeThrough()
    {
        var time = new FakeTimeProvider();
        await using var lab = await RelayLab.StartAsync();
        await using var connector = new UpstreamConnector(BreakerAfterTwoFailures(), lab.Sockets, time);
        var server = lab.ServerEndPoint;

        // Nothing listens yet: two refusals open the circuit.
        var failures = new[] { await ConnectAsync(connector, server), await ConnectAsync(connector, server) };
        var whileOpen = await ConnectAsync(connector, server);
        time.Advance(BreakDuration);
        var failedProbe = await ConnectAsync(connector, server);
        var reopened = await ConnectAsync(connector, server);

        // Now the server listens, but the circuit is open: no SYN may reach it.
        using var listener = await lab.ListenOnServerAsync();
        var openWhileListening = await ConnectAsync(connector, server);
        bool synArrived = listener.Poll(200_000, SelectMode.SelectRead);
        time.Advance(BreakDuration);
        var probe = await ConnectAsync(connector, server);
        using var accepted = await TestSockets.AcceptAsync(listener);
        var afterProbe = await ConnectAsync(connector, server);

        Assert.That(failures, Is.All.EqualTo(UpstreamConnectStatus.Refused));
        Assert.That(whileOpen, Is.EqualTo(UpstreamConnectStatus.CircuitOpen));
        Assert.That(failedProbe, Is.EqualTo(UpstreamConnectStatus.Refused), "the first connect after the break is tried");
        Assert.That(reopened, Is.EqualTo(UpstreamConnectStatus.CircuitOpen), "a failed probe opens the circuit again");
        Assert.That(openWhileListening, Is.EqualTo(UpstreamConnectStatus.CircuitOpen));
        Assert.That(synArrived, Is.False, "an open circuit sent a SYN");
        Assert.That(probe, Is.EqualTo(UpstreamConnectStatus.Connected));
        Assert.That(afterProbe, Is.EqualTo(UpstreamConnectStatus.Connected), "a successful probe closes the circuit");
    }

    [Test]
    public async Task ConnectAsync_MoreDestinationsThanMaxBreakers_KeepsTheBoundAndForgetsTheLeastRecentlyUsed()
    {
        await using var lab = await RelayLab.StartAsync();
        await using var connector = new UpstreamConnector(BreakerAfterTwoFailures(maxBreakers: 4), lab.Sockets, new FakeTimeProvider());
        var first = lab.ServerEndPoint;
        IPEndPoint Other(int i) => new(first.Address, first.Port + 1 + i);

        // Open the first destination's circuit, then use ten more destinations (nothing listens: all refused).
        await ConnectAsync(connector, first);
        await ConnectAsync(connector, first);
        var openBefore = await ConnectAsync(connector, first);
        int peak = 0;
        for (int i = 0; i < 10; i++)
        {
            await ConnectAsync(connector, Other(i));
            peak = Math.Max(peak, connector.BreakerCount);
        }
        var afterEviction = await ConnectAsync(connector, first);
        var recent = new[] { await ConnectAsync(connector, Other(9)), await ConnectAsync(connector, Other(9)) };

        Assert.That(openBefore, Is.EqualTo(UpstreamConnectStatus.CircuitOpen));
        Assert.That(peak, Is.EqualTo(4));
        Assert.That(connector.BreakerCount, Is.EqualTo(4));
        Assert.That(afterEviction, Is.EqualTo(UpstreamConnectStatus.Refused), "an evicted destination starts with a closed circuit");
        // The most recent destination kept its first failure: the next one opens its circuit.
        Assert.That(recent, Is.EqualTo(new[] { UpstreamConnectStatus.Refused, UpstreamConnectStatus.CircuitOpen }));
    }

    [Test]
    public async Task ConnectAsync_SocketCannotBeCreated_ReturnsFailedEveryTimeWithoutOpeningTheCircuit()
    {
        var sockets = new FailingSocketFactory();
        await using var connector = new UpstreamConnector(BreakerAfterTwoFailures(), sockets, new FakeTimeProvider());
        // Never contacted: the factory fails before any socket exists.
        var destination = new IPEndPoint(IPAddress.Parse("198.18.3.2"), 8080);

        var results = new List<UpstreamConnectResult>();
        for (int i = 0; i < 5; i++)
        {
            results.Add(await connector.ConnectAsync(destination, TransportProtocol.Mptcp).AsTask().WaitAsync(Timeout));
        }

        Assert.That(results.Select(r => r.Status), Is.All.EqualTo(UpstreamConnectStatus.Failed));
        Assert.That(results.Select(r => r.Error), Is.All.EqualTo(SocketError.TooManyOpenSockets));
        Assert.That(results.Select(r => r.Socket), Is.All.Null);
        Assert.That(sockets.Calls, Is.EqualTo(5), "every attempt reached the factory: the circuit stayed closed");
    }

    [Test]
    public void Constructor_InvalidOptions_ThrowsArgumentExceptionNamingEachProblem()
    {
        var options = new UpstreamConnectorOptions { MaxBreakers = 0, ConnectTimeout = TimeSpan.Zero, BreakerMinimumThroughput = 1 };

        var e = Assert.Throws<ArgumentException>(() => _ = new UpstreamConnector(options, SocketFactory.Default, TimeProvider.System));

        Assert.That(e!.Message, Does.Contain("MaxBreakers").And.Contain("ConnectTimeout").And.Contain("BreakerMinimumThroughput"));
        Assert.That(new UpstreamConnectorOptions().Validate(), Is.Empty, "the defaults are valid");
    }

    private sealed class FailingSocketFactory : SocketFactory
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public override Socket Create(AddressFamily family, TransportProtocol protocol)
        {
            Interlocked.Increment(ref _calls);
            throw new SocketException((int)SocketError.TooManyOpenSockets);
        }
    }
}
