using System.Net;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ProxySelection.Host.Control;
using ProxySelection.Engine;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Engine.Kernel;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Host.Hosting;

/// <summary>
/// The engine as a hosted service. Start: queue, rules, control socket (the host then signals READY=1). Stop
/// (SIGTERM/SIGINT): the engine stops claiming new flows, held connections get up to Proxy:DrainTimeout (a second
/// signal or the host's stop budget cuts it short), then the engine closes what is left and removes its rules.
/// SIGHUP and the control socket's <c>reload</c> apply what <see cref="PolicyReload"/> allows. In instance mode
/// (<see cref="InstanceMode"/>) the service route is announced once running and withdrawn before anything else at a stop,
/// and the announced addresses stay until the drain is over: in an ECMP tier, once the route is withdrawn, a held
/// connection lives on its join to this instance's own address, which REMOVE_ADDR would close.
/// </summary>
internal sealed class ProxyService(
    ProxyConfigurationResult loaded,
    Func<ProxyConfigurationResult> reload,
    IHostApplicationLifetime lifetime,
    IOptions<HostOptions> hostOptions,
    ILoggerFactory loggers,
    TimeProvider time) : IHostedService, IDisposable
{
    private readonly ProxyEngineOptions _options = loaded.Engine!;
    private readonly PolicyReload _policy = new(loaded.Options!, loaded.Engine!.Negotiation, loaded.Engine!.KeyRing, loaded.Telemetry,
        loaded.Engine!.Socks?.Credentials);
    private readonly ILogger _log = loggers.CreateLogger("ProxySelection.Host");

    /// <summary>service.instance.id, as the telemetry resource carries it: in the started event and the status too.</summary>
    private readonly string _instanceId = InstanceMode.IdFor(loaded.Options!.Instance);
    private readonly Lock _reloading = new();
    private readonly CancellationTokenSource _abortDrain = new();
    private readonly List<PosixSignalRegistration> _signals = [];
    private ProxyEngine? _engine;
    private JsonLinesEventSink? _events;
    private ControlServer? _control;
    private AddressAnnouncer? _announcer;
    private InstanceMode? _instance;
    private volatile Task? _announcing;
    private long _startedAt;
    private int _stopSignals;

    /// <summary>Why the start failed, classified, once it has.</summary>
    public StartFailure? StartFailure { get; private set; }

    /// <summary>The exception behind <see cref="StartFailure"/>, for <c>--debug</c>.</summary>
    public Exception? StartException { get; private set; }

    public ProxyEngine? Engine => _engine;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _startedAt = time.GetTimestamp();
        ProxyEngine? engine = null;
        AddressAnnouncer? announcer = null;
        var instance = loaded.Options!.Instance.Enabled
            ? new InstanceMode(loaded.Options.Instance, _log, JoinInitialAddressSysctl.RecordPathFor(loaded.Options.ChainPrefix))
            : null;
        try
        {
            Preflight();
            announcer = CreateAnnouncer();
            // Before the rules: the first connection held already carries the C flag.
            instance?.SetJoinInitialAddressOff();
            _events = loaded.Options!.EventsFile is { } eventsFile ? JsonLinesEventSink.Open(eventsFile) : null;
            engine = new ProxyEngine(_events is null ? _options : _options with { Events = _events }, time, loggers.CreateLogger<ProxyEngine>());
            await engine.StartAsync(cancellationToken).ConfigureAwait(false);
            if (announcer is not null)
            {
                try
                {
                    await announcer.AnnounceAsync(cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    // What was added goes with the rules; the start failure is the error to report.
                    await engine.DisposeAsync().ConfigureAwait(false);
                    await WithdrawAsync(announcer).ConfigureAwait(false);
                    throw;
                }
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            instance?.RestoreJoinInitialAddress();
            StartException = e;
            StartFailure = StartFailures.Classify(e, loaded.Options!, HostFacts.Current());
            DaemonLog.StartFailed(_log, StartFailure.Reason);
            throw;
        }

        _announcer = announcer;
        _instance = instance;
        _engine = engine!;
        if (instance is not null)
        {
            // The host signals READY on ApplicationStarted: the rules are in, so the routing engine may send traffic here.
            lifetime.ApplicationStarted.Register(() => _announcing = instance.AnnounceAsync(CancellationToken.None));
        }

        // The host's lifetime stops on the first SIGTERM/SIGINT; this counts them, so a second one cuts a drain short.
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM })
        {
            _signals.Add(PosixSignalRegistration.Create(signal, OnStopSignal));
        }

        _signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true;
            _ = Task.Run(Reload, CancellationToken.None);
        }));
        if (SignalIgnored(1))
        {
            // The runtime keeps a disposition inherited as ignored: the registration above never fires.
            DaemonLog.SighupIgnored(_log);
        }
        StartControlSocket(_engine);
        var negotiation = _options.Negotiation;
        if (!_options.Transparent)
        {
            DaemonLog.RunningHostConfigured(_log, _engine.SocksEndPoint, _options.Socks?.Credentials is null ? "none" : "username/password", negotiation.ProxyId);
            return;
        }

        DaemonLog.Running(_log, negotiation.Role, negotiation.Mode, negotiation.Policy, negotiation.ProxyId, string.Join(',', _options.Ports), _options.QueueNumber);
        _events?.Write(new ProxyEvent
        {
            Event = "started", Time = time.GetUtcNow(), Role = negotiation.Role.ToString(), Mode = negotiation.Mode.ToString(),
            Policy = negotiation.Policy.ToString(), ProxyId = negotiation.ProxyId, Ports = string.Join(',', _options.Ports), Queue = _options.QueueNumber,
            InstanceId = _instanceId,
        });
    }

    /// <summary>
    /// What the kernel would refuse later with a less telling errno, said first: the transparent modes need
    /// CAP_NET_ADMIN (NFQUEUE, iptables), they and the Convert listener need MPTCP on in this namespace.
    /// </summary>
    private void Preflight()
    {
        if (_options.Transparent && !HostChecks.HasNetAdmin())
        {
            throw new StartFailureException(new StartFailure(StartFailureKind.NotPermitted,
                $"not permitted: the {loaded.Options!.Mode.ToString().ToLowerInvariant()} mode intercepts with NFQUEUE and iptables, which need CAP_NET_ADMIN; run as root or give the service AmbientCapabilities=CAP_NET_ADMIN (or use --mode socks)"));
        }

        if ((_options.Transparent || _options.Socks?.Convert is not null) && HostChecks.MptcpProblem() is { } mptcp)
        {
            throw new StartFailureException(new StartFailure(StartFailureKind.KernelFeatureMissing, mptcp));
        }
    }

    /// <summary>The announcer for Proxy:AnnounceAddresses, null when none; refuses an address that is not this host's (spec §7.8.1).</summary>
    private AddressAnnouncer? CreateAnnouncer()
    {
        var running = _policy.Running;
        if (running.AnnounceAddresses.Count == 0)
        {
            return null;
        }

        var announcer = new AddressAnnouncer([.. running.AnnounceAddresses.Select(IPAddress.Parse)], AddressAnnouncer.RecordPathFor(running.ChainPrefix),
            new ProcessCommandRunner(), _log);
        var notLocal = announcer.NotLocal(AddressAnnouncer.LocalAddresses());
        if (notLocal.Count > 0)
        {
            throw new StartFailureException(new StartFailure(StartFailureKind.AddressNotAvailable,
                $"{AddressAnnouncer.Key}: {string.Join(", ", notLocal)} is not an address of this host's interfaces; announcing it would send clients' subflows elsewhere"));
        }

        return announcer;
    }

    private void OnStopSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        if (Interlocked.Increment(ref _stopSignals) > 1)
        {
            _abortDrain.Cancel();
        }

        lifetime.StopApplication();
    }

    private void StartControlSocket(ProxyEngine engine)
    {
        if (_policy.Running.ControlSocketPath is not { } path)
        {
            return;
        }

        _control = ControlServer.Start(path, command => Handle(engine, command), time, out var error);
        if (_control is null)
        {
            // The proxy itself is fine: it runs, only without status and cache commands.
            DaemonLog.ControlUnavailable(_log, error);
            return;
        }

        DaemonLog.ControlListening(_log, path);
    }

    private byte[] Handle(ProxyEngine engine, ControlCommand command)
    {
        switch (command)
        {
            case ControlCommand.Status:
                return ControlProtocol.FormatOk(StatusReplies.Status(engine, _options, time.GetElapsedTime(_startedAt), _instanceId));
            case ControlCommand.CacheShow:
                return ControlProtocol.FormatOk(StatusReplies.Cache(engine.Negotiator.Cache));
            case ControlCommand.CacheFlush:
                int removed = engine.Negotiator.Cache.Clear();
                DaemonLog.CacheFlushed(_log, removed);
                return ControlProtocol.FormatOk(new FlushReply(removed));
            default:
                var (applied, message) = Reload();
                return ControlProtocol.FormatOk(new ReloadReply(applied, message));
        }
    }

    /// <summary>Whether this process ignores <paramref name="signal"/> (the <c>SigIgn</c> mask of /proc/self/status).</summary>
    internal static bool SignalIgnored(int signal)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("SigIgn:", StringComparison.Ordinal))
                {
                    ulong mask = ulong.Parse(line.AsSpan(7).Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
                    return (mask & (1UL << (signal - 1))) != 0;
                }
            }
        }
        catch (IOException)
        {
            // No procfs: nothing to say.
        }

        return false;
    }

    /// <summary>SIGHUP and the control socket's reload: one at a time; the drain budget follows a new drain timeout.</summary>
    public (bool Applied, string Message) Reload()
    {
        lock (_reloading)
        {
            var before = _policy.Running;
            string line;
            try
            {
                line = _policy.Apply(reload());
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A SIGHUP's reload runs on a pool thread: an escaping exception would vanish unlogged.
                line = $"proxysel: reload refused, the configuration could not be read; still running as before: {e.GetType().Name}: {e.Message}";
            }

            DaemonLog.Reload(_log, line);
            // Host reads its options instance when it stops.
            hostOptions.Value.ShutdownTimeout = ProxyDaemon.ShutdownTimeoutFor(_policy.Running.DrainTimeout);
            return (!ReferenceEquals(before, _policy.Running), line);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var engine = _engine;
        if (engine is null)
        {
            return;
        }

        DaemonLog.Stopping(_log);
        if (_instance is not null)
        {
            await WithdrawServiceAsync(_instance).ConfigureAwait(false);
        }
        else
        {
            await WithdrawAsync(_announcer).ConfigureAwait(false);
        }

        var drainTimeout = _policy.Running.DrainTimeout;
        if (drainTimeout > TimeSpan.Zero)
        {
            using var abort = CancellationTokenSource.CreateLinkedTokenSource(_abortDrain.Token, cancellationToken);
            await DrainAsync(engine, drainTimeout, abort.Token).ConfigureAwait(false);
        }

        // Instance mode: the held connections have ended (or the drain is over); their joins need the address no more.
        await WithdrawAsync(_announcer).ConfigureAwait(false);

        try
        {
            if (_control is not null)
            {
                await _control.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            // The rules and the relay go whatever the control socket did.
            await engine.DisposeAsync().ConfigureAwait(false);
            _instance?.RestoreJoinInitialAddress();
        }

        DaemonLog.Stopped(_log, engine.Counters);
        _events?.Write(new ProxyEvent { Event = "stopped", Time = time.GetUtcNow(), Counters = engine.Counters.Snapshot() });
        _events?.Dispose();
        if (_options.Socks?.Listen is not null)
        {
            DaemonLog.SocksStopped(_log, engine.SocksCounters);
        }

        if (_options.Socks?.Convert is not null)
        {
            DaemonLog.ConvertStopped(_log, engine.ConvertCounters);
        }
    }

    /// <summary>
    /// Instance mode's first step on a drain or stop: the routing engine stops sending new connections here. An announce
    /// still running is waited for first, so it cannot land after the withdrawal.
    /// </summary>
    private async Task WithdrawServiceAsync(InstanceMode instance)
    {
        if (_announcing is { } announcing)
        {
            try
            {
                await announcing.WaitAsync(InstanceMode.CommandTimeout, time).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Withdraw anyway: the command's own timeout kills it.
            }
        }

        await instance.WithdrawAsync("stop").ConfigureAwait(false);
    }

    /// <summary>REMOVE_ADDR, so clients close their subflows to this host before it goes (spec §7.8.1): first on a drain or stop, after the drain in instance mode.</summary>
    private async Task WithdrawAsync(AddressAnnouncer? announcer)
    {
        if (announcer is null)
        {
            return;
        }

        try
        {
            await announcer.WithdrawAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InterceptionRulesException or IOException or UnauthorizedAccessException)
        {
            // The stop goes on; proxysel cleanup removes what is recorded.
            AnnounceLog.WithdrawFailed(_log, e.Message);
        }
    }

    private async Task DrainAsync(ProxyEngine engine, TimeSpan deadline, CancellationToken abort)
    {
        engine.StopClaiming();
        DaemonLog.Draining(_log, engine.Negotiator.ActiveConnections, deadline.TotalSeconds);
        // DrainPending: the held connections and the SOCKS/Convert clients still in their handshake or their front's grace.
        bool drained = await new GracefulDrain(time).WaitForHeldAsync(() => engine.DrainPending, deadline, abort).ConfigureAwait(false);
        if (drained)
        {
            DaemonLog.Drained(_log);
        }
        else
        {
            DaemonLog.DrainEnded(_log, engine.Negotiator.ActiveConnections);
        }
    }

    public void Dispose()
    {
        foreach (var signal in _signals)
        {
            signal.Dispose();
        }

        _abortDrain.Dispose();
        _events?.Dispose();
    }
}
