using System.Runtime.InteropServices;

namespace ProxySelection.LabTool;

/// <summary>
/// SIGINT and SIGTERM for a verb that builds things it must tear down (the demo, interop): the signal is ours to handle,
/// so the process does not die at once; <see cref="Token"/> cancels and the verb removes what it made before it exits.
/// </summary>
internal sealed class InterruptSignals : IDisposable
{
    private readonly CancellationTokenSource _interrupt = new();
    private readonly PosixSignalRegistration _sigint;
    private readonly PosixSignalRegistration _sigterm;

    public InterruptSignals()
    {
        _sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
    }

    public CancellationToken Token => _interrupt.Token;

    public void Dispose()
    {
        _sigint.Dispose();
        _sigterm.Dispose();
        _interrupt.Dispose();
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        _interrupt.Cancel();
    }
}
