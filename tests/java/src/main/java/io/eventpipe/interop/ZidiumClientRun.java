package io.eventpipe.interop;

import zidium.client.IZidiumClient;
import zidium.client.ZidiumClient;
import zidium.components.IComponentControl;
import zidium.dto.getEcho.GetEchoResponse;
import zidium.events.EventImportance;
import zidium.events.ZidiumEvent;
import zidium.webServices.FailedResponseInfo;

/**
 * Drives Zidium's published Java client (net.zidium:apijava 1.0.5, unchanged) against eventpipe, the way its README
 * shows: root component, a child, an error (twice, so it joins) and a custom event. Prints key=value lines for the
 * test to check. Usage: ZidiumClientRun API_URL SECRET_KEY
 */
public final class ZidiumClientRun {

    public static void main(String[] args) {
        IZidiumClient client = new ZidiumClient("demo", args[1], args[0]);
        IComponentControl root = client.getRootComponentControl();
        IComponentControl child = root.getOrCreateChild("billing-service");
        System.out.println("root=" + root.getId());
        System.out.println("child=" + child.getId());
        System.out.println("childFake=" + child.isFake());

        IllegalStateException error = new IllegalStateException("card declined");
        child.addError("Payment failed", error);
        // Two identical events dated in the same millisecond are one event to eventpipe (a retry is counted once):
        // keep the two errors a few milliseconds apart so that they are two occurrences that join.
        sleep(5);
        child.addError("Payment failed", error);

        ZidiumEvent custom = new ZidiumEvent();
        custom.setMessage("Nightly export done");
        custom.setTypeDisplayName("Export finished");
        custom.setImportance(EventImportance.SUCCESS);
        custom.getPropertis().addString("rows", "1200");
        custom.setComponentControl(child); // the client's addEvent does not set it, and its EventManager needs it
        child.addEvent(custom);
        client.getEventManager().flush();

        GetEchoResponse echo = client.getTransport().getEcho("ping");
        System.out.println("echo=" + echo.Code + ":" + echo.Data);
        IComponentControl byId = client.getComponentControl(child.getId());
        System.out.println("byIdFake=" + byId.isFake());

        FailedResponseInfo failed = client.getTransport().getLastFailedResponseInfo();
        if (failed != null) {
            // Expected: GetServerTime, which this client cannot send (it dereferences its null request body).
            String request = failed.Request == null ? "null" : failed.Request.getClass().getSimpleName();
            System.out.println("lastFailed=" + request + ":" + failed.Response.Code + ":" + failed.Response.ErrorMessage);
        }
        System.exit(0); // the client's log and event threads never end by themselves
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
